"""Deployment files; ``deploy.cluster`` is the one-machine cluster of real processes."""
