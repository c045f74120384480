"""What operators run beside the pipeline: consumer lag, dead-letter tools, rebuilds, summaries.

Above the services it watches (consumers, storage, reports), below the command line.
"""
