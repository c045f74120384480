"""Consumer lag: offsets sampled from the broker (``monitor``), Burrow's rules over a sliding
window (``window``), the table and JSON of ``nyc311 lag`` (``report``) and the Prometheus
exporter (``exporter``)."""
