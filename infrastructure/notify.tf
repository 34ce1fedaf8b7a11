# Optional notifications and budget, both off by default.
#
# notify_emails: an SNS topic with one email subscription per address. The start link (machine
# started) and the instance (idle warning, stop and its reason, long runs) publish one sentence
# each to it; each may publish only to this topic (iam.tf). Each address gets a confirmation mail
# from AWS first and hears nothing until it clicks the link.
#
# monthly_budget_usd: an AWS Budgets cost budget over what this stack's default tag
# (Stack = name_prefix, providers.tf) marks, emailing the same addresses directly (not through the
# topic: Budgets can't publish to a topic encrypted with the AWS-managed key). It sees costs only
# once "Stack" is an active cost allocation tag (variables.tf monthly_budget_usd says how).

resource "aws_sns_topic" "notify" {
  count = length(var.notify_emails) > 0 ? 1 : 0

  name = "${var.name_prefix}-notify"
  # The AWS-managed key: publishers in this account need no KMS grant of their own.
  kms_master_key_id = "alias/aws/sns"
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.notify_emails)

  topic_arn = aws_sns_topic.notify[0].arn
  protocol  = "email"
  endpoint  = each.value
}

resource "aws_budgets_budget" "monthly" {
  count = var.monthly_budget_usd == null ? 0 : 1

  name         = "${var.name_prefix}-monthly"
  budget_type  = "COST"
  limit_amount = tostring(var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  # "user:<key>$<value>": format(), since "$${" in an HCL string is an escaped "${".
  cost_filter {
    name   = "TagKeyValue"
    values = [format("user:Stack$%s", var.name_prefix)]
  }

  # 80 % and 100 % of the actual spend, and 100 % of the forecast.
  dynamic "notification" {
    for_each = [["ACTUAL", 80], ["ACTUAL", 100], ["FORECASTED", 100]]
    content {
      comparison_operator        = "GREATER_THAN"
      threshold                  = notification.value[1]
      threshold_type             = "PERCENTAGE"
      notification_type          = notification.value[0]
      subscriber_email_addresses = var.notify_emails
    }
  }
}

locals {
  # The settings' NOTIFY_TOPIC_ARN and the Lambda's: "" when notifications are off.
  notify_topic_arn = length(var.notify_emails) > 0 ? aws_sns_topic.notify[0].arn : ""
}
