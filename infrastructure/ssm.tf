# The two secrets, as SecureString parameters encrypted with the account's aws/ssm key. The values
# are write-only (value_wo): they reach SSM but never the Terraform state. Terraform rewrites them
# only when secrets_version changes, so bump it after changing team_pass or github_access_token.
# The instance re-reads both at every boot; the Lambda at its next cold start.

resource "aws_ssm_parameter" "team_pass" {
  #checkov:skip=CKV_AWS_337:The AWS-managed aws/ssm key is enough for a team password; a customer key costs $1/month and needs extra kms:Decrypt grants for the Lambda and the instance.
  name             = local.team_pass_parameter
  description      = "Team password for the start link and Jupyter Lab (${var.name_prefix})"
  type             = "SecureString"
  value_wo         = var.team_pass
  value_wo_version = var.secrets_version
}

resource "aws_ssm_parameter" "github_token" {
  #checkov:skip=CKV_AWS_337:The AWS-managed aws/ssm key is enough here; a customer key costs $1/month and needs extra kms:Decrypt grants for the instance.
  name             = local.github_token_parameter
  description      = "GitHub token the instance pushes autosave commits with (${var.name_prefix})"
  type             = "SecureString"
  value_wo         = var.github_access_token
  value_wo_version = var.secrets_version
}

# The instance code (see locals.tf): a manifest with the chunk count and the bundle's SHA-256,
# and the chunks. Not secret, so plain String parameters in the free Standard tier.
resource "aws_ssm_parameter" "bootstrap_chunk" {
  #checkov:skip=CKV2_AWS_34:The chunks are the project's open-source instance code, not a secret; encryption would add kms:Decrypt grants for nothing.
  #checkov:skip=CKV_AWS_337:Not a secret (open-source code), so no customer KMS key is needed.
  count = length(local.bootstrap_chunks)

  name        = "${local.bootstrap_parameter_prefix}/${count.index}"
  description = "Instance code bundle, chunk ${count.index} (${var.name_prefix})"
  type        = "String"
  tier        = "Standard"
  value       = local.bootstrap_chunks[count.index]
}

resource "aws_ssm_parameter" "bootstrap_manifest" {
  #checkov:skip=CKV2_AWS_34:The manifest holds a chunk count and a SHA-256, nothing secret.
  #checkov:skip=CKV_AWS_337:Not a secret (a count and a checksum), so no customer KMS key is needed.
  name        = "${local.bootstrap_parameter_prefix}/manifest"
  description = "Instance code bundle: chunk count and SHA-256 (${var.name_prefix})"
  type        = "String"
  tier        = "Standard"
  value       = jsonencode({ chunks = length(local.bootstrap_chunks), sha256 = sha256(local.bootstrap_bundle) })
}

# What the instance needs to know (locals.tf instance_config), none of it secret. boot.py reads it
# at every boot and writes /etc/jupyter-on-demand/config.env from it, so a change of idle_minutes,
# jupyter_port, jupyter_tls or the GitHub repository reaches the instance at its next wake without
# touching user_data.
resource "aws_ssm_parameter" "settings" {
  #checkov:skip=CKV2_AWS_34:The settings are names, a port and a number of minutes, nothing secret; the secrets have parameters of their own.
  #checkov:skip=CKV_AWS_337:Not a secret, so no customer KMS key is needed.
  name        = "${local.bootstrap_parameter_prefix}/settings"
  description = "Instance settings, a JSON object of strings (${var.name_prefix})"
  type        = "String"
  tier        = "Standard"
  value       = jsonencode(local.instance_config)
}
