data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

# The latest Deep Learning GPU AMI, from its public SSM parameter, when no ami is given.
data "aws_ssm_parameter" "dlami" {
  count = local.use_latest_ami ? 1 : 0
  name  = var.dlami_ssm_parameter
}

# A default subnet of the default VPC, when no subnet_id is given.
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
}

data "aws_subnet" "selected" {
  id = local.subnet_id
}

locals {
  use_latest_ami = var.ami == null || var.ami == ""
  ami_id         = local.use_latest_ami ? data.aws_ssm_parameter.dlami[0].insecure_value : var.ami
  subnet_id      = var.subnet_id != "" ? var.subnet_id : sort(data.aws_subnets.default[0].ids)[0]

  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.region

  stage_name     = "v1"
  jupyter_scheme = var.jupyter_tls ? "https" : "http"
  instance_arn   = "arn:${local.partition}:ec2:${local.region}:${local.account_id}:instance/${aws_instance.jupyter.id}"

  # SSM parameter names: the contract with lambda_src (TEAM_PASS_PARAMETER) and with the instance
  # (ec2_bootstrap/boot.py reads both names from /etc/jupyter-on-demand/config.env).
  team_pass_parameter    = "/${var.name_prefix}/team-pass"
  github_token_parameter = "/${var.name_prefix}/github-token"

  # The tag the instance sets on itself once Jupyter answers; lambda_src/handler.py READY_TAG.
  ready_tag = "jupyter-on-demand:ready-at"

  # What the instance needs to know, none of it secret: written to /etc/jupyter-on-demand/config.env.
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
  }

  # The instance code. EC2 caps user_data at 16 KB even gzipped, and ec2_bootstrap/ is ~120 KB
  # (35 KB gzipped), so user_data carries only the idle stop, the installer and the config; the
  # whole folder travels as a gzipped bundle in free Standard SSM parameters of
  # 4 KB each, which boot.py fetches at first boot and again at every boot, so a code change
  # reaches the instance at its next wake without touching user_data or the disk.
  bootstrap_dir              = "${path.module}/../ec2_bootstrap"
  bootstrap_parameter_prefix = "/${var.name_prefix}/bootstrap"
  bootstrap_bundle           = base64gzip(jsonencode({ for name in fileset(local.bootstrap_dir, "{*.py,*.sh,*.service,*.timer,*.txt}") : name => file("${local.bootstrap_dir}/${name}") }))
  bootstrap_chunks           = [for offset in range(0, length(local.bootstrap_bundle), 4000) : substr(local.bootstrap_bundle, offset, 4000)]

  # user_data: the idle stop first (its timer and the bash fail-safe, which stops the machine
  # while the checker can't run), then the installer; the rest, the checker included, comes from
  # the bundle. tests/infrastructure/terraform.py USER_DATA_FILES mirrors these lists.
  user_data_files = ["boot.py", "layout.py", "idle-failsafe.sh", "requirements.txt"]
  user_data_units = ["jupyter-on-demand-idle.service", "jupyter-on-demand-idle.timer", "jupyter-on-demand-install.service"]
  user_data = templatefile("${local.bootstrap_dir}/cloud-init.yaml.tftpl", {
    files  = { for name in local.user_data_files : name => file("${local.bootstrap_dir}/${name}") }
    units  = { for name in local.user_data_units : name => file("${local.bootstrap_dir}/${name}") }
    config = merge(local.instance_config, { BOOTSTRAP_PARAMETER_PREFIX = local.bootstrap_parameter_prefix })
  })
}
