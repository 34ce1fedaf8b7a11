# The Lambda's deployment package: lambda_src/ zipped by the hashicorp/archive provider.
#
# A seam for the tests: this file is the only one that uses the archive provider (required in
# versions.tf: a module has one required_providers block), and lambda.tf
# reads the package only through local.lambda_package ({ path, base64sha256 }). The offline test
# machines carry the AWS provider in a local mirror but not the archive provider, so
# tests/infrastructure/stack.py copies infrastructure/ without this file and writes in its place
# one that defines the same local for a zip the test built from lambda_src/ with Python's zipfile
# (and drops the archive provider from its copy of versions.tf). Admins keep this file:
# `terraform init` downloads the archive provider as usual.

data "archive_file" "lambda" {
  type        = "zip"
  source_dir  = "${path.module}/../lambda_src"
  output_path = "${path.module}/build/lambda_src.zip"
  excludes    = ["__pycache__", "**/__pycache__/**"]
}

locals {
  lambda_package = {
    path         = data.archive_file.lambda.output_path
    base64sha256 = data.archive_file.lambda.output_base64sha256
  }
}
