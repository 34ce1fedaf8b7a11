resource "aws_cloudwatch_log_group" "lambda" {
  #checkov:skip=CKV_AWS_158:The log holds method, path and decisions, never a secret; a customer KMS key would cost more than the whole idle stack.
  #checkov:skip=CKV_AWS_338:Retention is the admin's choice (log_retention_days, 30 by default); a year of logs is not needed for a start link.
  name              = "/aws/lambda/${var.name_prefix}-start-link"
  retention_in_days = var.log_retention_days
}

resource "aws_lambda_function" "start_link" {
  #checkov:skip=CKV_AWS_117:Not in a VPC on purpose, so it reaches the EC2 and SSM APIs without a NAT gateway (which would cost more than the idle stack).
  #checkov:skip=CKV_AWS_116:Invoked synchronously by API Gateway only; there are no asynchronous events for a dead-letter queue to keep.
  #checkov:skip=CKV_AWS_173:The environment holds no secret (ids, names, port); the password is read from SSM at run time.
  #checkov:skip=CKV_AWS_272:Code signing needs a signing profile and pipeline a small team does not run; Terraform zips the reviewed lambda_src/ directly.
  #checkov:skip=CKV_AWS_50:X-Ray would need extra IAM actions; the Lambda's one-line-per-decision log covers a two-route API.
  function_name                  = "${var.name_prefix}-start-link"
  description                    = "Start link: wakes the team's Jupyter GPU instance"
  role                           = aws_iam_role.lambda.arn
  runtime                        = "python3.13"
  handler                        = "handler.lambda_handler"
  filename                       = local.lambda_package.path # lambda_package.tf
  source_code_hash               = local.lambda_package.base64sha256
  timeout                        = 15
  memory_size                    = 128
  reserved_concurrent_executions = var.lambda_reserved_concurrency

  environment {
    # The contract with lambda_src/handler.py Config.from_env. No secret here: only the name of the
    # SSM parameter holding the password. INSTANCE_TYPE: ec2.tf ignores later changes of the
    # instance's type (a fallback may have set it), so the Lambda switches a stopped instance back
    # to it before each start.
    variables = {
      INSTANCE_ID             = aws_instance.jupyter.id
      TEAM_PASS_PARAMETER     = aws_ssm_parameter.team_pass.name
      JUPYTER_PORT            = tostring(var.jupyter_port)
      JUPYTER_SCHEME          = local.jupyter_scheme
      IDLE_MINUTES            = tostring(var.idle_minutes)
      INSTANCE_TYPE           = var.instance_type
      FALLBACK_INSTANCE_TYPES = join(",", var.fallback_instance_types)
      MAX_KEEP_AWAKE_HOURS    = tostring(var.max_keep_awake_hours)
      PRICE_PER_HOUR_USD      = local.price_per_hour_usd # prices.tf; "" when unknown
      PRICE_NOTE              = local.price_note
      NOTIFY_TOPIC_ARN        = local.notify_topic_arn # notify.tf; "" when off
    }
  }

  # One JSON object per log record: the runtime adds timestamp, level and requestId, the handler
  # adds request_id, route, outcome, status and state (lambda_src/handler.py). The refused-password
  # metric filter (monitoring.tf) matches its phrase inside the JSON message as before.
  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.lambda.name
    application_log_level = "INFO"
    system_log_level      = "WARN"
  }

  depends_on = [aws_cloudwatch_log_group.lambda, aws_iam_role_policy.lambda]
}

resource "aws_lambda_permission" "api" {
  statement_id  = "AllowStartLinkApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.start_link.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_api_gateway_rest_api.this.execution_arn}/${local.stage_name}/GET/*"
}
