"""tiercut: run one neural network across device, edge and cloud, cut where it is fastest."""
__version__ = "0.1.0"
