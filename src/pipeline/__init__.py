"""Multi-cloud pipeline deployer: describe a streaming pipeline once, plan, compare and deploy it anywhere."""

__version__ = "0.1.0"
