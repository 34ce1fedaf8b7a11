# --- The instance: reads its two secrets, tags itself ready ---------------------------------------

data "aws_iam_policy_document" "instance_assume" {
  statement {
    sid     = "Ec2AssumesRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "instance" {
  # GetParameters: the wake reads both secrets in one call, and the code chunks ten a call.
  statement {
    sid       = "ReadItsSecrets"
    actions   = ["ssm:GetParameter", "ssm:GetParameters"]
    resources = [aws_ssm_parameter.team_pass.arn, aws_ssm_parameter.github_token.arn]
  }

  # The instance code bundle (user_data can't hold it: 16 KB limit, see locals.tf) and the settings.
  statement {
    sid       = "ReadItsCode"
    actions   = ["ssm:GetParameter", "ssm:GetParameters"]
    resources = ["arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${local.bootstrap_parameter_prefix}/*"]
  }

  # The ready signal and the idle verdict: once Jupyter answers, the instance tags itself with
  # READY_TAG so the start link can tell "booting" from "ready", and its idle checker publishes
  # what keeps it awake or when it stops (and, before it stops, why) in the verdict tags, which
  # the link reads for free. Only those tag keys (never the link's keep-awake tag, nor Name), only
  # on this stack's instance (by its Name tag, since the instance's own ARN does not exist before
  # its profile does).
  statement {
    sid       = "TagItsReadinessAndVerdict"
    actions   = ["ec2:CreateTags"]
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:instance/*"]

    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/Name"
      values   = [local.instance_name]
    }

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "aws:TagKeys"
      values   = concat([local.ready_tag], local.verdict_tags)
    }
  }

  # Messages to the team (idle warning, stop and its reason, long runs): only to this stack's
  # topic, and only when notify_emails made one.
  dynamic "statement" {
    for_each = length(var.notify_emails) > 0 ? [1] : []
    content {
      sid       = "PublishNotifications"
      actions   = ["sns:Publish"]
      resources = [aws_sns_topic.notify[0].arn]
    }
  }
}

resource "aws_iam_role" "instance" {
  name               = "${var.name_prefix}-instance"
  assume_role_policy = data.aws_iam_policy_document.instance_assume.json
}

resource "aws_iam_role_policy" "instance" {
  name   = "read-secrets-and-tag-itself"
  role   = aws_iam_role.instance.id
  policy = data.aws_iam_policy_document.instance.json
}

resource "aws_iam_instance_profile" "instance" {
  name = "${var.name_prefix}-instance"
  role = aws_iam_role.instance.name
}

# --- The Lambda: exactly the calls lambda_src/handler.py makes (IAM_ACTIONS) ----------------------

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    sid     = "LambdaAssumesRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "lambda" {
  statement {
    sid       = "StartTheInstance"
    actions   = ["ec2:StartInstances"]
    resources = [local.instance_arn]
  }

  # /v1/keep-awake: only the keep-awake tag, only on this instance, and only a value of its form
  # ("until=<ISO> set=<ISO>"). The RequestTag condition also requires that key in the request,
  # and the TagKeys one refuses any other beside it. A cancel rewrites it (until == set): no
  # DeleteTags.
  statement {
    sid       = "TagKeepAwake"
    actions   = ["ec2:CreateTags"]
    resources = [local.instance_arn]

    condition {
      test     = "ForAllValues:StringEquals"
      variable = "aws:TagKeys"
      values   = [local.keep_awake_tag]
    }

    condition {
      test     = "StringLike"
      variable = "aws:RequestTag/${local.keep_awake_tag}"
      values   = ["until=*Z set=*Z"]
    }
  }

  # Only with fallback types: switching the stopped instance's type after a capacity error, and
  # back. Only the instance type attribute, and only to the configured and fallback types: the
  # function can never change the user data, the shutdown behaviour or any other attribute
  # (EC2 sets ec2:Attribute/InstanceType only on a request that changes the type).
  dynamic "statement" {
    for_each = length(var.fallback_instance_types) > 0 ? [1] : []
    content {
      sid       = "SwitchToFallbackType"
      actions   = ["ec2:ModifyInstanceAttribute"]
      resources = [local.instance_arn]

      condition {
        test     = "StringEquals"
        variable = "ec2:Attribute/InstanceType"
        values   = distinct(concat([var.instance_type], var.fallback_instance_types))
      }
    }
  }

  # DescribeInstances supports no resource-level permissions: AWS requires "*".
  statement {
    sid       = "DescribeInstances"
    actions   = ["ec2:DescribeInstances"]
    resources = ["*"]
  }

  statement {
    sid       = "ReadTeamPassword"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.team_pass.arn]
  }

  # "Machine started" messages: only to this stack's topic, and only when notify_emails made one.
  dynamic "statement" {
    for_each = length(var.notify_emails) > 0 ? [1] : []
    content {
      sid       = "PublishNotifications"
      actions   = ["sns:Publish"]
      resources = [aws_sns_topic.notify[0].arn]
    }
  }

  statement {
    sid       = "WriteItsLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.lambda.arn}:*"]
  }
}

resource "aws_iam_role" "lambda" {
  name               = "${var.name_prefix}-start-link"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
}

resource "aws_iam_role_policy" "lambda" {
  name   = "start-the-instance"
  role   = aws_iam_role.lambda.id
  policy = data.aws_iam_policy_document.lambda.json
}

# --- API Gateway: writing access logs needs an account-level CloudWatch role ----------------------

data "aws_iam_policy_document" "apigateway_assume" {
  statement {
    sid     = "ApiGatewayAssumesRole"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["apigateway.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "apigateway_logs" {
  name               = "${var.name_prefix}-apigateway-logs"
  assume_role_policy = data.aws_iam_policy_document.apigateway_assume.json
}

resource "aws_iam_role_policy_attachment" "apigateway_logs" {
  role       = aws_iam_role.apigateway_logs.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"
}
