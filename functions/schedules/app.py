"""The schedules function: one EventBridge Scheduler fire per invocation (see mcpdo.server.lambda_events)."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from mcpdo.server.lambda_events import SchedulesRuntime

logger = Logger()
metrics = Metrics()
tracer = Tracer()
runtime = SchedulesRuntime.start(logger, metrics)  # INIT: once per execution environment


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return runtime.handle_fire(event)
