resource "aws_security_group" "jupyter" {
  name        = "${var.name_prefix}-jupyter"
  description = "SSH and Jupyter Lab from the team's addresses only"
  vpc_id      = data.aws_subnet.selected.vpc_id

  tags = {
    Name = "${var.name_prefix}-jupyter"
  }
}

resource "aws_vpc_security_group_ingress_rule" "ssh" {
  for_each = toset(var.allowed_ips)

  security_group_id = aws_security_group.jupyter.id
  description       = "SSH from an allowed address"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
}

resource "aws_vpc_security_group_ingress_rule" "jupyter" {
  for_each = toset(var.allowed_ips)

  security_group_id = aws_security_group.jupyter.id
  description       = "Jupyter Lab from an allowed address"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.jupyter_port
  to_port           = var.jupyter_port
}

resource "aws_vpc_security_group_egress_rule" "all" {
  #checkov:skip=CKV_AWS_382:The instance needs open egress: pip (PyPI), GitHub over HTTPS, and the AWS APIs (SSM, EC2 tags) without a NAT or VPC endpoints.
  security_group_id = aws_security_group.jupyter.id
  description       = "Everything out: PyPI, GitHub and the AWS APIs"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "-1"
}

resource "aws_instance" "jupyter" {
  #checkov:skip=CKV_AWS_88:Teammates reach Jupyter directly on its public address; the security group admits only allowed_ips.
  #checkov:skip=CKV_AWS_126:Detailed monitoring costs money while the machine runs and adds nothing the idle checker needs.
  ami                                  = local.ami_id
  instance_type                        = var.instance_type
  subnet_id                            = data.aws_subnet.selected.id # in a zone offering the type
  key_name                             = var.key_name
  vpc_security_group_ids               = [aws_security_group.jupyter.id]
  iam_instance_profile                 = aws_iam_instance_profile.instance.name
  associate_public_ip_address          = true
  ebs_optimized                        = true
  monitoring                           = false
  instance_initiated_shutdown_behavior = "stop" # the idle checker stops the machine with `shutdown -h now`

  # Gzipped cloud-config (cloud-init unpacks it): stays under EC2's 16 KB user_data limit.
  # A change updates the instance in place (a stop/start), never replaces it or its disk.
  user_data_base64            = base64gzip(local.user_data)
  user_data_replace_on_change = false

  # Tags in the metadata: the idle checker reads the start link's keep-awake tag there, with no
  # AWS call and no permission to describe instances. AWS then refuses tag keys with a space or
  # a "/" on the instance, which var.tags' validation says at plan time.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required" # IMDSv2 only
    http_put_response_hop_limit = 1
    instance_metadata_tags      = "enabled"
  }

  # Spot: a persistent request that stops (never terminates) the machine on an interruption, so
  # the disk survives and the start link can start it again. Changing market replaces the
  # instance and its disk (EC2 can't convert one), as the variable's description says.
  dynamic "instance_market_options" {
    for_each = var.market == "spot" ? [var.market] : []
    content {
      market_type = "spot"

      spot_options {
        spot_instance_type             = "persistent"
        instance_interruption_behavior = "stop"
      }
    }
  }

  root_block_device {
    volume_type           = "gp3"
    volume_size           = var.root_volume_size
    encrypted             = true
    delete_on_termination = true
  }

  tags = {
    Name = local.instance_name
  }

  lifecycle {
    # A newer "latest" Deep Learning AMI must not replace the machine and its disk on a later apply;
    # the start link may also have switched the type to a fallback after a capacity error.
    # The ready tag (local.ready_tag) is set by the instance on itself once Jupyter answers; a
    # later apply must leave it, or the start link says "booting" until the next boot. So are the
    # idle verdict's tags (local.verdict_tags, the instance's) and the keep-awake tag
    # (local.keep_awake_tag, the start link's): an apply must not erase why the machine is awake
    # or asleep, nor cancel a keep-awake. Literals: ignore_changes takes no expressions
    # (tests/infrastructure/test_contracts.py compares them with the locals).
    # The subnet neither: the default one is chosen among the zones that offer instance_type
    # (locals.tf), so a new instance_type, or a zone AWS starts offering it in, would pick another
    # and replace the machine and its disk. The postconditions say when it stays where the
    # configuration would not put it (unknown before it exists: checked at apply, then silent).
    ignore_changes = [
      ami,
      instance_type,
      subnet_id,
      tags["jupyter-on-demand:ready-at"],
      tags["jupyter-on-demand:awake-because"],
      tags["jupyter-on-demand:stops-at"],
      tags["jupyter-on-demand:idle-since"],
      tags["jupyter-on-demand:verdict-at"],
      tags["jupyter-on-demand:stop-reason"],
      tags["jupyter-on-demand:stopped-at"],
      tags["jupyter-on-demand:month-hours"],
      tags["jupyter-on-demand:keep-awake-until"],
    ]

    postcondition {
      condition     = contains(data.aws_ec2_instance_type_offerings.instance_type.locations, self.availability_zone)
      error_message = "The instance is in ${self.availability_zone}, which does not offer instance_type ${var.instance_type}. Terraform leaves the machine where it is (moving it would replace the machine and its disk), and the start link could not switch it to that type. Set instance_type back, or push everyone's work and run `terraform apply -replace=aws_instance.jupyter`."
    }

    postcondition {
      condition     = var.subnet_id == "" || var.subnet_id == self.subnet_id
      error_message = "subnet_id is ${var.subnet_id}, but the instance is in ${self.subnet_id}. Terraform leaves the machine where it is (moving it would replace the machine and its disk). Set subnet_id back, or push everyone's work and run `terraform apply -replace=aws_instance.jupyter`."
    }
  }

  # The first boot reads all of these (its role's policy through the profile, the code bundle,
  # the settings and both secrets) and its installer does not wait for them: create them first.
  depends_on = [
    aws_iam_role_policy.instance,
    aws_iam_instance_profile.instance,
    aws_ssm_parameter.bootstrap_chunk,
    aws_ssm_parameter.bootstrap_manifest,
    aws_ssm_parameter.settings,
    aws_ssm_parameter.team_pass,
    aws_ssm_parameter.github_token,
  ]
}
