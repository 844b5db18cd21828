"""Sample data for the work-order pipeline (`python -m pipelines.data.sample`)."""
