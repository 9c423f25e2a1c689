"""bgjob-operator: run background work on Kubernetes from one BackgroundJob resource."""

__version__ = "0.1.0"
