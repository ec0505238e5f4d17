"""The notebook surface: the ``%deploy`` magic, the optimization studio widget, cards.
The only part of nbdeploy that imports IPython and ipywidgets."""
