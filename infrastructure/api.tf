resource "aws_api_gateway_rest_api" "this" {
  name        = "${var.name_prefix}-start-link"
  description = "Start link of the team's Jupyter GPU instance"

  endpoint_configuration {
    types = ["REGIONAL"]
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_api_gateway_resource" "route" {
  for_each = toset(["start", "status", "keep-awake"])

  rest_api_id = aws_api_gateway_rest_api.this.id
  parent_id   = aws_api_gateway_rest_api.this.root_resource_id
  path_part   = each.key
}

resource "aws_api_gateway_method" "get" {
  #checkov:skip=CKV_AWS_59:The link is pasted into a browser, which cannot send an authorizer's header; the Lambda checks the team password (constant-time) and stage throttling slows guessing.
  #checkov:skip=CKV2_AWS_53:The only input is the query string, which the Lambda validates itself (missing, malformed and oversized values get a 4xx).
  for_each = aws_api_gateway_resource.route

  rest_api_id   = aws_api_gateway_rest_api.this.id
  resource_id   = each.value.id
  http_method   = "GET"
  authorization = "NONE"
}

resource "aws_api_gateway_integration" "lambda" {
  for_each = aws_api_gateway_method.get

  rest_api_id             = aws_api_gateway_rest_api.this.id
  resource_id             = each.value.resource_id
  http_method             = each.value.http_method
  integration_http_method = "POST"
  type                    = "AWS_PROXY"
  uri                     = aws_lambda_function.start_link.invoke_arn
}

resource "aws_api_gateway_deployment" "this" {
  rest_api_id = aws_api_gateway_rest_api.this.id

  # A new deployment when a route, method or integration changes. Only what defines them, not the
  # whole resources: the provider reads back optional attributes left unset (cache_key_parameters,
  # request_parameters, authorizer_id...) as [], {} or "" where apply stored null, so a hash of the
  # whole objects changed after every apply and replaced the deployment on each later plan.
  triggers = {
    redeployment = sha1(jsonencode([
      [for route in aws_api_gateway_resource.route : [route.id, route.path_part]],
      [for method in aws_api_gateway_method.get : [method.id, method.http_method, method.authorization]],
      [for integration in aws_api_gateway_integration.lambda : [integration.id, integration.type, integration.integration_http_method, integration.uri]],
    ]))
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_api_gateway_account" "this" {
  # Account-wide, per region: API Gateway needs this role to write any CloudWatch log.
  cloudwatch_role_arn = aws_iam_role.apigateway_logs.arn

  depends_on = [aws_iam_role_policy_attachment.apigateway_logs]
}

resource "aws_cloudwatch_log_group" "api" {
  #checkov:skip=CKV_AWS_158:Access logs hold no secret (no query strings); a customer KMS key would cost more than the whole idle stack.
  #checkov:skip=CKV_AWS_338:Retention is the admin's choice (log_retention_days, 30 by default).
  name              = "/aws/apigateway/${var.name_prefix}-start-link"
  retention_in_days = var.log_retention_days
}

resource "aws_api_gateway_stage" "v1" {
  #checkov:skip=CKV_AWS_120:Caching would serve stale instance states; every answer must be live.
  #checkov:skip=CKV2_AWS_29:The WAF is optional (waf_rate_limit_per_ip, off by default): a web ACL costs more per month than the idle stack; stage throttling and the Lambda's password check protect the link.
  #checkov:skip=CKV2_AWS_77:The optional WAF (waf.tf) only limits requests per client IP; the Log4j and anonymous-IP managed rule groups guard Java backends and would block teammates on VPNs, in front of a Python Lambda.
  #checkov:skip=CKV2_AWS_51:Browsers of teammates present no client certificate.
  #checkov:skip=CKV_AWS_73:X-Ray adds cost and nothing the access log does not show for two routes.
  rest_api_id   = aws_api_gateway_rest_api.this.id
  deployment_id = aws_api_gateway_deployment.this.id
  stage_name    = local.stage_name

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api.arn
    # $context.path and $context.resourcePath never include the query string (the password).
    format = jsonencode({
      requestId = "$context.requestId"
      time      = "$context.requestTime"
      sourceIp  = "$context.identity.sourceIp"
      method    = "$context.httpMethod"
      path      = "$context.resourcePath"
      status    = "$context.status"
      latencyMs = "$context.responseLatency"
      error     = "$context.integrationErrorMessage"
    })
  }

  depends_on = [aws_api_gateway_account.this]
}

resource "aws_api_gateway_method_settings" "all" {
  #checkov:skip=CKV_AWS_225:Caching would serve stale instance states; every answer must be live.
  #checkov:skip=CKV_AWS_308:No cache, so nothing to encrypt.
  rest_api_id = aws_api_gateway_rest_api.this.id
  stage_name  = aws_api_gateway_stage.v1.stage_name
  method_path = "*/*"

  settings {
    throttling_rate_limit  = var.api_throttle_rate_limit
    throttling_burst_limit = var.api_throttle_burst_limit
    metrics_enabled        = true
    logging_level          = "ERROR"
    data_trace_enabled     = false # full request logs would contain the password
  }
}
