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
