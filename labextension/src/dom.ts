import { Clipboard } from '@jupyterlab/apputils';

/** A new element with a class and, optionally, its text. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** Set a node's text only when it changed (a poll must not disturb a selection). */
export function setText(node: Node, text: string): void {
  if (node.textContent !== text) {
    node.textContent = text;
  }
}

/** Set or remove an attribute only when it changed. */
export function setAttr(
  node: Element,
  name: string,
  value: string | null
): void {
  if (value === null) {
    if (node.hasAttribute(name)) {
      node.removeAttribute(name);
    }
  } else if (node.getAttribute(name) !== value) {
    node.setAttribute(name, value);
  }
}

/** A small button of the panel's style. */
export function button(
  label: string,
  action: string,
  onClick: () => void,
  title = ''
): HTMLButtonElement {
  const node = el('button', 'jp-nbdeploy-Button', label);
  node.type = 'button';
  node.dataset.action = action;
  if (title) {
    node.title = title;
  }
  node.addEventListener('click', onClick);
  return node;
}

const COPIED_MS = 1500;

/**
 * A button that copies `text()` to the clipboard and says so ("Copied ✓") for a moment.
 */
export function copyButton(
  label: string,
  action: string,
  text: () => string,
  title: string
): HTMLButtonElement {
  const node = button(
    label,
    action,
    () => {
      Clipboard.copyToSystem(text());
      node.textContent = 'Copied ✓';
      node.classList.add('jp-mod-copied');
      window.clearTimeout(Number(node.dataset.timer ?? 0));
      node.dataset.timer = String(
        window.setTimeout(() => {
          node.textContent = label;
          node.classList.remove('jp-mod-copied');
        }, COPIED_MS)
      );
    },
    title
  );
  return node;
}

/**
 * Keep `parent`'s children (all of them: give each list a container of its own) keyed
 * by `key`, in the order of `items`: existing nodes are updated in place, new ones
 * made, the ones whose item went away removed.
 */
export function reconcile<T, V extends { node: HTMLElement }>(
  parent: HTMLElement,
  views: Map<string, V>,
  items: T[],
  key: (item: T) => string,
  make: (item: T) => V,
  update: (view: V, item: T) => void
): void {
  const seen = new Set<string>();
  let cursor: Node | null = null;
  for (const item of items) {
    const id = key(item);
    seen.add(id);
    let view = views.get(id);
    if (!view) {
      view = make(item);
      views.set(id, view);
    }
    update(view, item);
    const next: Node | null = cursor ? cursor.nextSibling : parent.firstChild;
    if (view.node !== next) {
      parent.insertBefore(view.node, next);
    }
    cursor = view.node;
  }
  for (const [id, view] of views) {
    if (!seen.has(id)) {
      view.node.remove();
      views.delete(id);
    }
  }
}

/** `1.2k`, `3.4`, `0.05`: a count or rate, short. */
export function short(value: number): string {
  if (value >= 10000) {
    return `${(value / 1000).toFixed(0)}k`;
  }
  if (value >= 1000) {
    return `${(value / 1000).toFixed(1)}k`;
  }
  if (value >= 10 || Number.isInteger(value)) {
    return value.toFixed(0);
  }
  return value.toPrecision(2);
}

/** Milliseconds, short: `0.71`, `12`, `1.2 s`. */
export function ms(value: number | null): string {
  if (value === null) {
    return '–';
  }
  if (value >= 1000) {
    return `${(value / 1000).toFixed(1)} s`;
  }
  return value >= 10 ? value.toFixed(0) : value.toPrecision(2);
}
