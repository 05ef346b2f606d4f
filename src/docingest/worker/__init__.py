"""The BaseWorker and its stages."""
