"""The events function: SQS batches of routed events and of deliveries (see mcpdo.server.lambda_events)."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from mcpdo.server.lambda_events import EventsRuntime

logger = Logger()
metrics = Metrics()
tracer = Tracer()
runtime = EventsRuntime.start(logger, metrics)  # INIT: once per execution environment


# Messages carry tenants' event data: neither the event nor the response goes to logs or traces.
@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return runtime.handle_batch(event, context)
