provider "aws" {
  profile = var.credentials_profile
  region  = var.region

  default_tags {
    tags = merge(var.tags, {
      Project = "jupyter-on-demand"
      Stack   = var.name_prefix
    })
  }
}
