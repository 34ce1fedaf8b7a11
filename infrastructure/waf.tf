# Optional per-client limit on the start link, off unless waf_rate_limit_per_ip is set.
#
# The stage throttle (api.tf) is one bucket shared by every caller, so a flood of wrong passwords
# from one address makes the link answer 429 to the whole team while it lasts. A rate-based WAF
# rule counts requests per client IP instead and blocks (403) only the address over the limit.
# A web ACL costs more per month than the rest of this idle stack, hence off by default.

resource "aws_wafv2_web_acl" "start_link" {
  #checkov:skip=CKV2_AWS_31:WAF logging needs a Firehose stream or a log group billed per request; the stage access log already records each caller's IP and status, blocked requests included.
  #checkov:skip=CKV_AWS_192:The Log4j managed rule group guards Java backends; the start link is a Python Lambda, and every managed rule group adds to the monthly bill.
  count = var.waf_rate_limit_per_ip == null ? 0 : 1

  name        = "${var.name_prefix}-start-link"
  description = "Blocks a client IP that sends more than waf_rate_limit_per_ip requests in 5 minutes to the start link."
  scope       = "REGIONAL"

  default_action {
    allow {}
  }

  rule {
    name     = "${var.name_prefix}-rate-per-ip"
    priority = 0

    action {
      block {}
    }

    statement {
      rate_based_statement {
        # Requests per client IP in the default 5-minute window (evaluation_window_sec = 300).
        limit              = var.waf_rate_limit_per_ip
        aggregate_key_type = "IP"
      }
    }

    visibility_config {
      cloudwatch_metrics_enabled = true
      metric_name                = "${var.name_prefix}-rate-per-ip"
      # Samples keep request headers unredacted for 3 hours (AWS offers no redaction for them);
      # this stack stores nothing that could carry the team password.
      sampled_requests_enabled = false
    }
  }

  visibility_config {
    cloudwatch_metrics_enabled = true
    metric_name                = "${var.name_prefix}-start-link"
    sampled_requests_enabled   = false
  }
}

resource "aws_wafv2_web_acl_association" "start_link" {
  count = var.waf_rate_limit_per_ip == null ? 0 : 1

  resource_arn = aws_api_gateway_stage.v1.arn
  web_acl_arn  = aws_wafv2_web_acl.start_link[0].arn
}
