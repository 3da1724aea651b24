"""The MCP function: API Gateway HTTP API events to the `do` tool (see mcpdo.server.lambda_runtime)."""

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from mcpdo.server.lambda_runtime import LambdaRuntime

logger = Logger()
metrics = Metrics()
tracer = Tracer()
runtime = LambdaRuntime.start(logger, metrics)  # INIT: once per execution environment


# Events carry the Authorization header and responses tenants' records: neither goes to logs or traces.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return runtime.handle(event, getattr(context, "aws_request_id", None))
