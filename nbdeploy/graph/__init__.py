"""See a graph and change it visibly: inspect, show, diff, activations, optimize."""
