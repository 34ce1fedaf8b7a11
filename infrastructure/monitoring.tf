# --- Password guessing on the start link -----------------------------------------------------------
#
# The start link has no lockout (a flood must never lock the team out); API Gateway's stage throttle
# (api.tf) caps the guessing rate. What is left is knowing: the Lambda logs one line per refused
# password (lambda_src/handler.py REFUSED_PASSWORD_LOG, never the password itself), this filter
# counts those lines and the alarm goes off on a burst. tests/infrastructure/test_monitoring.py
# runs the handler and checks this pattern against the lines it writes.

resource "aws_cloudwatch_log_metric_filter" "refused_passwords" {
  name           = "${var.name_prefix}-refused-passwords"
  log_group_name = aws_cloudwatch_log_group.lambda.name
  # One quoted term: the exact phrase, case-sensitive, anywhere in the line.
  pattern = "\"refused a wrong password\""

  metric_transformation {
    name      = "RefusedPasswords"
    namespace = "${var.name_prefix}/start-link"
    value     = "1"
    unit      = "Count"
  }
}

resource "aws_cloudwatch_metric_alarm" "password_guessing" {
  alarm_name          = "${var.name_prefix}-password-guessing"
  alarm_description   = "At least ${var.refused_password_alarm_threshold} wrong passwords on the start link within 5 minutes: someone may be guessing. The Lambda's log (${aws_cloudwatch_log_group.lambda.name}) names the caller's address per refusal; if in doubt, change team_pass and secrets_version and run terraform apply."
  namespace           = aws_cloudwatch_log_metric_filter.refused_passwords.metric_transformation[0].namespace
  metric_name         = aws_cloudwatch_log_metric_filter.refused_passwords.metric_transformation[0].name
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.refused_password_alarm_threshold
  comparison_operator = "GreaterThanOrEqualToThreshold"
  # No refusal logged means no data point: that is the quiet state, not an unknown one.
  treat_missing_data = "notBreaching"
}
