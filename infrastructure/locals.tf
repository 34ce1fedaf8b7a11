data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

# The latest Deep Learning GPU AMI, from its public SSM parameter, when no ami is given.
data "aws_ssm_parameter" "dlami" {
  count = local.use_latest_ami ? 1 : 0
  name  = var.dlami_ssm_parameter
}

# The zones of the region that offer instance_type: the instance's subnet must be in one of them
# ("Your requested instance type is not supported in your requested Availability Zone" otherwise).
data "aws_ec2_instance_type_offerings" "instance_type" {
  location_type = "availability-zone"

  filter {
    name   = "instance-type"
    values = [var.instance_type]
  }

  lifecycle {
    postcondition {
      condition     = length(self.locations) > 0
      error_message = "No availability zone of ${var.region} offers instance_type ${var.instance_type}. Choose another instance_type or region; `aws ec2 describe-instance-type-offerings --location-type availability-zone --filters Name=instance-type,Values=${var.instance_type} --region <region>` lists the zones that offer it."
    }
  }
}

# The default subnets of the default VPC in zones that offer instance_type, when no subnet_id is
# given (local.subnet_id takes the first by id).
data "aws_vpc" "default" {
  count   = var.subnet_id == "" ? 1 : 0
  default = true
}

data "aws_subnets" "default" {
  count = var.subnet_id == "" ? 1 : 0

  filter {
    name   = "vpc-id"
    values = [data.aws_vpc.default[0].id]
  }

  filter {
    name   = "default-for-az"
    values = ["true"]
  }

  filter {
    name   = "availability-zone"
    values = data.aws_ec2_instance_type_offerings.instance_type.locations
  }

  lifecycle {
    postcondition {
      condition     = length(self.ids) > 0
      error_message = "The default VPC of ${var.region} has no default subnet in a zone that offers ${var.instance_type} (zones that offer it: ${join(", ", sort(data.aws_ec2_instance_type_offerings.instance_type.locations))}). Create one with `aws ec2 create-default-subnet --availability-zone <zone>`, or set subnet_id to a subnet in one of those zones."
    }
  }
}

data "aws_subnet" "selected" {
  id = local.subnet_id

  lifecycle {
    postcondition {
      condition     = contains(data.aws_ec2_instance_type_offerings.instance_type.locations, self.availability_zone)
      error_message = "Subnet ${self.id} is in ${self.availability_zone}, which does not offer instance_type ${var.instance_type}. Set subnet_id to a subnet in one of: ${join(", ", sort(data.aws_ec2_instance_type_offerings.instance_type.locations))} (or leave it empty to pick a default subnet there)."
    }
  }
}

locals {
  use_latest_ami = var.ami == null || var.ami == ""
  ami_id         = local.use_latest_ami ? data.aws_ssm_parameter.dlami[0].insecure_value : var.ami
  # Sorted, so every plan picks the same default subnet among those in offering zones.
  subnet_id = var.subnet_id != "" ? var.subnet_id : sort(data.aws_subnets.default[0].ids)[0]

  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  # `id` is the region's name in the AWS provider 5.x and 6.x alike (6.x renamed `name` to
  # `region`, and 5.x has no `region`).
  region = data.aws_region.current.id

  stage_name     = "v1"
  jupyter_scheme = var.jupyter_tls ? "https" : "http"
  instance_arn   = "arn:${local.partition}:ec2:${local.region}:${local.account_id}:instance/${aws_instance.jupyter.id}"

  # SSM parameter names: the contract with lambda_src (TEAM_PASS_PARAMETER) and with the instance
  # (ec2_bootstrap/boot.py reads both names from the settings parameter below).
  team_pass_parameter    = "/${var.name_prefix}/team-pass"
  github_token_parameter = "/${var.name_prefix}/github-token"

  # The instance's Name tag: its permission to tag itself ready names the instance by it (iam.tf).
  instance_name = "${var.name_prefix}-gpu"

  # The tag the instance sets on itself once Jupyter answers; lambda_src/handler.py READY_TAG.
  ready_tag = "jupyter-on-demand:ready-at"

  # The idle checker's verdict, which the instance tags itself with and the start link reads
  # (ec2_bootstrap/layout.py VERDICT_TAGS, lambda_src/idle.py), and the one tag the start link
  # writes, /v1/keep-awake's (layout.KEEP_AWAKE_TAG, idle.KEEP_AWAKE_TAG). Each side may write
  # only its own keys (iam.tf); later applies leave them all (ec2.tf ignore_changes, literals).
  verdict_tags = [
    "jupyter-on-demand:awake-because",
    "jupyter-on-demand:stops-at",
    "jupyter-on-demand:idle-since",
    "jupyter-on-demand:verdict-at",
    "jupyter-on-demand:stop-reason",
    "jupyter-on-demand:stopped-at",
    "jupyter-on-demand:month-hours",
  ]
  keep_awake_tag = "jupyter-on-demand:keep-awake-until"

  # What the instance needs to know, none of it secret: the SSM parameter <prefix>/settings
  # (ssm.tf), as a JSON object of strings, which boot.py reads at every boot and writes to
  # /etc/jupyter-on-demand/config.env. So a change here reaches the instance at its next wake,
  # and never changes user_data.
  instance_config = {
    AWS_REGION             = local.region
    TEAM_PASS_PARAMETER    = local.team_pass_parameter
    GITHUB_TOKEN_PARAMETER = local.github_token_parameter
    GITHUB_REPO_URL        = "https://github.com/${var.github_user_name}/${var.github_repo_name}.git"
    GITHUB_USER_NAME       = var.github_user_name
    JUPYTER_PORT           = tostring(var.jupyter_port)
    JUPYTER_TLS            = var.jupyter_tls ? "1" : "0"
    IDLE_MINUTES           = tostring(var.idle_minutes)
    READY_TAG              = local.ready_tag
    WARN_MINUTES           = tostring(var.warn_minutes)
    MAX_KEEP_AWAKE_HOURS   = tostring(var.max_keep_awake_hours)
    LONG_RUN_HOURS         = tostring(var.long_run_hours)
    NOTIFY_TOPIC_ARN       = local.notify_topic_arn # notify.tf; "" when off
    PAGE_URL               = local.page_url
    MARKET                 = var.market
  }

  # The start link's base, for the link in every message to the team. Built from the API's id, not
  # read from the stage's invoke_url: the stage depends on the Lambda, whose environment holds the
  # instance's id, and the instance depends on these settings (a cycle). The same URL as the
  # stage's invoke_url (tests/infrastructure/test_apply.py compares them after an apply).
  page_url = "https://${aws_api_gateway_rest_api.this.id}.execute-api.${local.region}.${data.aws_partition.current.dns_suffix}/${local.stage_name}"

  # The instance code. EC2 caps user_data at 16 KB even gzipped, and ec2_bootstrap/ is ~120 KB
  # (35 KB gzipped), so user_data carries only the idle stop, the installer and where the rest is; the
  # whole folder travels as a gzipped bundle in free Standard SSM parameters of
  # 4 KB each, which boot.py fetches at first boot and again at every boot, so a code change
  # reaches the instance at its next wake without touching user_data or the disk.
  bootstrap_dir              = "${path.module}/../ec2_bootstrap"
  bootstrap_parameter_prefix = "/${var.name_prefix}/bootstrap"
  # The top-level files, and the prebuilt JupyterLab extension in its folders (not its source).
  bootstrap_files  = setunion(fileset(local.bootstrap_dir, "{*.py,*.sh,*.service,*.timer,*.in,*.txt}"), fileset(local.bootstrap_dir, "labextensions/**"))
  bootstrap_bundle = base64gzip(jsonencode({ for name in local.bootstrap_files : name => file("${local.bootstrap_dir}/${name}") }))
  bootstrap_chunks = [for offset in range(0, length(local.bootstrap_bundle), 4000) : substr(local.bootstrap_bundle, offset, 4000)]

  # user_data: the idle stop first (its units, rendered for the default layout, and the bash
  # fail-safe, which stops the machine while the checker can't run), then the installer (boot.py
  # and the modules its `install` imports); the rest, the checker included, comes from the bundle.
  # tests/infrastructure/terraform.py USER_DATA_FILES and layout.USER_DATA_UNITS name the same.
  # Its copies lose their full-line comments (not `#!`), and the Python's docstrings their text
  # (each becomes ""), to stay under EC2's cap: the same code (tests/ec2_bootstrap/
  # test_user_data.py compares the Python's syntax trees, docstrings blanked), and the first sync
  # replaces them with the bundle's whole files.
  comment_line    = "/(?m)^[ \\t]*#([^!\\n][^\\n]*)?\\n/"
  docstring       = "/(?s)(^|\\n[ \\t]*)\"\"\"[^\\n].*?\"\"\"/"
  user_data_files = ["boot.py", "boot_install.py", "boot_sync.py", "layout.py", "rootfs.py", "idle-failsafe.sh", "requirements.txt"]
  user_data_units = ["jupyter-on-demand-install.service", "jupyter-on-demand-idle.service", "jupyter-on-demand-idle.timer"]
  # bootstrap_env (/etc/jupyter-on-demand/bootstrap.env) says only where the rest is: the region and
  # the SSM prefix of the bundle and the settings. user_data changes only when the installer does.
  bootstrap_env = {
    AWS_REGION                 = local.region
    BOOTSTRAP_PARAMETER_PREFIX = local.bootstrap_parameter_prefix
  }
  user_data = templatefile("${local.bootstrap_dir}/cloud-init.yaml.tftpl", {
    # requirements.txt as it is: the install's fingerprint hashes it, and the bundle's is whole.
    files = { for name in local.user_data_files : name => (
      endswith(name, ".txt") ? file("${local.bootstrap_dir}/${name}") :
      endswith(name, ".py") ? replace(replace(file("${local.bootstrap_dir}/${name}"), local.comment_line, ""), local.docstring, "$1\"\"") :
      replace(file("${local.bootstrap_dir}/${name}"), local.comment_line, "")
    ) }
    units         = { for name in local.user_data_units : name => replace(file("${local.bootstrap_dir}/${name}"), local.comment_line, "") }
    bootstrap_env = local.bootstrap_env
  })
}
