"""The dead-letter queues, for operators: :mod:`~operations.dlq.letters` reads them (``nyc311 dlq
list``), :mod:`~operations.dlq.replay` sends them back to their source topics once each
(``nyc311 dlq replay``)."""
