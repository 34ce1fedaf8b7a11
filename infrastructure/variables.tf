variable "allowed_ips" {
  type        = list(string)
  description = "CIDR blocks allowed to reach SSH (22) and Jupyter on the instance, e.g. [\"203.0.113.10/32\"]."

  validation {
    condition     = length(var.allowed_ips) > 0 && alltrue([for cidr in var.allowed_ips : can(cidrnetmask(cidr))])
    error_message = "allowed_ips must list at least one IPv4 CIDR block, such as \"203.0.113.10/32\"."
  }

  # AWS refuses a block with host bits set (198.51.100.7/24) at apply time; say so at plan time.
  # try(): an entry that is no CIDR at all is the validation above's to report.
  validation {
    condition     = alltrue([for cidr in var.allowed_ips : try(cidrhost(cidr, 0) == split("/", cidr)[0], true)])
    error_message = "allowed_ips entries must be network addresses: ${join("; ", [for cidr in var.allowed_ips : "for ${cidr} type \"${cidrhost(cidr, 0)}/${split("/", cidr)[1]}\" (the whole block) or \"${split("/", cidr)[0]}/32\" (that one address)" if !try(cidrhost(cidr, 0) == split("/", cidr)[0], true)])}."
  }
}

variable "ami" {
  type        = string
  default     = ""
  nullable    = true
  description = "AMI id for the instance. Empty or null: the latest AWS Deep Learning GPU AMI, looked up through dlami_ssm_parameter."

  validation {
    condition     = var.ami == null || var.ami == "" || can(regex("^ami-[0-9a-f]{8,17}$", var.ami))
    error_message = "ami must be empty (use the latest Deep Learning AMI) or an id such as \"ami-0123456789abcdef0\"."
  }
}

variable "api_throttle_burst_limit" {
  type        = number
  default     = 5
  description = "API Gateway burst limit for the start link (requests). Low on purpose: it slows password guessing."

  validation {
    condition     = var.api_throttle_burst_limit >= 1 && var.api_throttle_burst_limit <= 100
    error_message = "api_throttle_burst_limit must be between 1 and 100."
  }
}

variable "api_throttle_rate_limit" {
  type        = number
  default     = 1
  description = "API Gateway steady rate limit for the start link (requests per second)."

  validation {
    condition     = var.api_throttle_rate_limit > 0 && var.api_throttle_rate_limit <= 50
    error_message = "api_throttle_rate_limit must be greater than 0 and at most 50."
  }
}

variable "credentials_profile" {
  type        = string
  description = "AWS credentials profile (from ~/.aws/credentials) Terraform deploys with."
}

variable "dlami_ssm_parameter" {
  type        = string
  default     = "/aws/service/deeplearning/ami/x86_64/oss-nvidia-driver-gpu-pytorch-2.9-ubuntu-24.04/latest/ami-id"
  description = "Public SSM parameter holding the latest Deep Learning GPU AMI id; used when ami is empty."

  validation {
    condition     = startswith(var.dlami_ssm_parameter, "/aws/service/")
    error_message = "dlami_ssm_parameter must be a public AWS parameter starting with /aws/service/."
  }
}

variable "fallback_instance_types" {
  type        = list(string)
  default     = []
  description = "Instance types the start link switches to, in order, when AWS has no capacity for the current one."

  validation {
    condition     = alltrue([for t in var.fallback_instance_types : can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", t))])
    error_message = "fallback_instance_types must be instance types such as \"g5.4xlarge\"."
  }
}

variable "github_access_token" {
  type        = string
  sensitive   = true
  ephemeral   = true
  description = "GitHub fine-grained token with Contents read/write on github_repo_name. Written to SSM write-only; never stored in the state."

  validation {
    condition     = length(var.github_access_token) >= 20
    error_message = "github_access_token looks too short; create a fine-grained token on GitHub (Settings > Developer settings)."
  }
}

variable "github_repo_name" {
  type        = string
  description = "Name of the team's private GitHub repository that receives every saved file."

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+$", var.github_repo_name))
    error_message = "github_repo_name must be a bare repository name such as \"ml-notebooks\" (no owner, no URL)."
  }
}

variable "github_user_name" {
  type        = string
  description = "GitHub user or organisation that owns github_repo_name."

  validation {
    condition     = can(regex("^[A-Za-z0-9-]+$", var.github_user_name))
    error_message = "github_user_name must be a GitHub user or organisation name such as \"my-team\"."
  }
}

variable "identity_file_path" {
  type        = string
  description = "Local path of the .pem private key of key_name; only used to print the ssh_command output."
}

variable "idle_minutes" {
  type        = number
  default     = 40
  description = "Minutes without interaction and without running code after which the instance stops itself."

  validation {
    condition     = var.idle_minutes > 0
    error_message = "idle_minutes must be a positive number of minutes, such as 40."
  }
}

variable "instance_type" {
  type        = string
  default     = "g4dn.4xlarge"
  description = "EC2 instance type of the shared GPU machine."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.instance_type))
    error_message = "instance_type must be an EC2 instance type such as \"g4dn.4xlarge\"."
  }
}

variable "jupyter_port" {
  type        = number
  default     = 8443
  description = "TCP port Jupyter Lab listens on."

  validation {
    condition     = var.jupyter_port >= 1024 && var.jupyter_port <= 65535 && var.jupyter_port != 22 && floor(var.jupyter_port) == var.jupyter_port
    error_message = "jupyter_port must be a whole number between 1024 and 65535, such as 8443."
  }
}

variable "jupyter_tls" {
  type        = bool
  default     = true
  description = "Serve Jupyter Lab over HTTPS with a self-signed certificate made at first boot. false: plain HTTP."
}

variable "key_name" {
  type        = string
  description = "Name of an existing EC2 key pair for SSH access to the instance."
}

variable "lambda_reserved_concurrency" {
  type        = number
  default     = -1
  description = "Concurrent executions reserved for (and capping) the start link. -1 (the default): no reservation, the only value a new account accepts while its Lambda concurrency quota is still 10; 1 to 10 once the quota has been raised."

  validation {
    condition     = var.lambda_reserved_concurrency == -1 || (var.lambda_reserved_concurrency >= 1 && var.lambda_reserved_concurrency <= 10)
    error_message = "lambda_reserved_concurrency must be -1 (no reservation) or between 1 and 10."
  }
}

variable "log_retention_days" {
  type        = number
  default     = 30
  description = "Days to keep the Lambda's and the API's CloudWatch logs."

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a CloudWatch retention value: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ..."
  }
}

variable "long_run_hours" {
  type        = number
  default     = 8
  description = "Hours the machine may run in one session before notify_emails hear about it (then once a day while it keeps running). Needs notify_emails to reach anyone."

  validation {
    condition     = var.long_run_hours > 0
    error_message = "long_run_hours must be a positive number of hours, such as 8."
  }
}

variable "market" {
  type        = string
  default     = "on-demand"
  description = "How EC2 sells the machine: \"on-demand\" (the list price, started whenever asked while AWS has capacity) or \"spot\" (spare capacity, typically 60-70 % cheaper; a persistent request that AWS may interrupt with a 2-minute notice, which stops the machine and keeps its disk; AWS alone starts it again once capacity is back). Before switching market or destroying, cancel the stack's spot request (aws ec2 cancel-spot-instance-requests), which the provider may leave behind. Switching market replaces the instance: a new machine with a new disk (push or save everyone's work first; saved work is in GitHub)."

  validation {
    condition     = contains(["on-demand", "spot"], var.market)
    error_message = "market must be \"on-demand\" or \"spot\"."
  }
}

variable "max_keep_awake_hours" {
  type        = number
  default     = 12
  description = "Longest keep-awake, in hours, that the start link (/v1/keep-awake) and JupyterLab's Keep awake buttons accept. While kept awake the machine runs, and bills, even when nobody works."

  validation {
    condition     = var.max_keep_awake_hours >= 1 && var.max_keep_awake_hours <= 72
    error_message = "max_keep_awake_hours must be a number of hours from 1 to 72, such as 12."
  }
}

variable "monthly_budget_usd" {
  type        = number
  default     = null
  nullable    = true
  description = "Monthly AWS Budgets cost budget (USD) for the resources this stack tags (Stack = name_prefix); it emails notify_emails at 80 % and 100 % of actual spend and at 100 % of forecast spend. null: no budget. Two budgets per account are free, each further one about $0.02 a day. The budget sees costs only once the tag key \"Stack\" is activated as a cost allocation tag (Billing console > Cost allocation tags); AWS offers a key there only after it has appeared in billing data (up to 24 h after the first apply), so Terraform can't activate it for you; earlier costs count once backfilled (aws ce start-cost-allocation-tag-backfill)."

  validation {
    condition     = var.monthly_budget_usd == null ? true : var.monthly_budget_usd > 0
    error_message = "monthly_budget_usd must be null (no budget) or a positive amount of US dollars, such as 300."
  }

  # A budget alerts by email only: with nobody to tell, it would be silent.
  validation {
    condition     = var.monthly_budget_usd == null || length(var.notify_emails) > 0
    error_message = "monthly_budget_usd needs notify_emails: the budget alerts those addresses. Add at least one to notify_emails, or set monthly_budget_usd = null."
  }
}

variable "name_prefix" {
  type        = string
  default     = "jupyter-on-demand"
  description = "Prefix of every resource name, so two deployments can live in one account."

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}$", var.name_prefix))
    error_message = "name_prefix must be 2-31 lowercase letters, digits or dashes, starting with a letter."
  }
}

variable "notify_emails" {
  type        = list(string)
  default     = []
  description = "Addresses told when the start link starts the machine, when the idle checker warns, when the machine stops (and why), and when it has run longer than long_run_hours: an SNS topic with one email subscription each (each address must click the confirmation link AWS mails it). Also the monthly_budget_usd alerts. Empty: no topic, no messages. SNS email costs nothing for the first 1,000 messages a month, then $2 per 100,000."

  validation {
    condition     = alltrue([for email in var.notify_emails : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", email))])
    error_message = "notify_emails must be email addresses such as \"alice@example.com\"; these are not: ${join(", ", [for email in var.notify_emails : email if !can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", email))])}."
  }

  # AWS Budgets takes at most 10 email subscribers per alert, and one subscription per address.
  validation {
    condition     = length(var.notify_emails) <= 10 && length(distinct(var.notify_emails)) == length(var.notify_emails)
    error_message = "notify_emails may list at most 10 addresses (AWS Budgets' limit per alert), each once."
  }
}

variable "price_per_hour_usd" {
  type        = number
  default     = null
  nullable    = true
  description = "Price per running hour (USD) behind the page's month-to-date cost estimate. null: the on-demand list price of instance_type in region, from the table in prices.tf (its source and date are there); a type or region not in that table gives hours only, no cost. Set it for spot (the spot price varies), a Savings Plan or a fallback type. An estimate: it leaves out the disk (about $0.08 per GB-month for gp3), data transfer and taxes."

  validation {
    condition     = var.price_per_hour_usd == null ? true : var.price_per_hour_usd >= 0
    error_message = "price_per_hour_usd must be null (the list price) or an amount of US dollars per hour, 0 or more, such as 0.45."
  }
}

variable "refused_password_alarm_threshold" {
  type        = number
  default     = 20
  description = "Wrong passwords on the start link within 5 minutes that set off the password-guessing CloudWatch alarm."

  validation {
    condition     = var.refused_password_alarm_threshold >= 1 && floor(var.refused_password_alarm_threshold) == var.refused_password_alarm_threshold
    error_message = "refused_password_alarm_threshold must be a whole number of wrong passwords, 1 or more, such as 20."
  }
}

variable "region" {
  type        = string
  description = "AWS region to deploy into, such as \"us-east-1\"."

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as \"us-east-1\"."
  }
}

variable "root_volume_size" {
  type        = number
  default     = 100
  description = "Size in GB of the encrypted gp3 root volume (the Deep Learning AMI needs at least 75)."

  validation {
    condition     = var.root_volume_size >= 75 && var.root_volume_size <= 16384
    error_message = "root_volume_size must be between 75 and 16384 GB."
  }
}

variable "secrets_version" {
  type        = number
  default     = 1
  description = "Bump after changing team_pass or github_access_token: the SSM values are write-only, so Terraform only rewrites them when this changes."

  validation {
    condition     = var.secrets_version >= 1 && floor(var.secrets_version) == var.secrets_version
    error_message = "secrets_version must be a whole number >= 1; add 1 each time you change a secret."
  }
}

variable "subnet_id" {
  type        = string
  default     = ""
  description = "Subnet to launch the instance in. Empty: a default subnet of the default VPC."

  validation {
    condition     = var.subnet_id == "" || can(regex("^subnet-[0-9a-f]{8,17}$", var.subnet_id))
    error_message = "subnet_id must be empty or a subnet id such as \"subnet-0123456789abcdef0\"."
  }
}

variable "tags" {
  type        = map(string)
  default     = {}
  description = "Extra tags for every resource."

  # The instance shows its tags in its metadata (ec2.tf instance_metadata_tags), where AWS allows
  # only these characters in tag keys and refuses to launch or modify the instance otherwise.
  validation {
    condition     = alltrue([for key in keys(var.tags) : can(regex("^[A-Za-z0-9+=._:@-]{1,128}$", key)) && !contains([".", "..", "_index"], key)])
    error_message = "tags keys may hold only letters, digits and + - = . _ : @ (no spaces, no \"/\"), and may not be \".\", \"..\" or \"_index\": the instance shows its tags in its metadata, where AWS allows no others. Rename: ${join(", ", [for key in keys(var.tags) : key if !can(regex("^[A-Za-z0-9+=._:@-]{1,128}$", key)) || contains([".", "..", "_index"], key)])}."
  }
}

variable "team_pass" {
  type        = string
  sensitive   = true
  description = "Team password for the start link and Jupyter Lab (at least 8 characters)."

  validation {
    condition     = length(var.team_pass) >= 8
    error_message = "team_pass must have at least 8 characters."
  }
}

variable "waf_rate_limit_per_ip" {
  type        = number
  default     = null
  nullable    = true
  description = "Requests one client IP may send to the start link in 5 minutes before AWS WAF blocks it (403) until it slows down. null: no WAF (it costs about $6/month plus $0.60 per million requests). A page waiting for Jupyter reloads every 10 s (30 requests in 5 minutes)."

  validation {
    # A conditional, not ||: Terraform 1.11 evaluates both sides of || and null >= 10 is an error.
    condition     = var.waf_rate_limit_per_ip == null ? true : (var.waf_rate_limit_per_ip >= 10 && var.waf_rate_limit_per_ip <= 2000000000 && floor(var.waf_rate_limit_per_ip) == var.waf_rate_limit_per_ip)
    error_message = "waf_rate_limit_per_ip must be null (no WAF) or a whole number of requests per 5 minutes from 10 to 2000000000 (AWS WAF's range), such as 100."
  }
}

variable "warn_minutes" {
  type        = number
  default     = 5
  description = "Minutes before an idle stop at which JupyterLab warns everyone who has it open (with Keep awake buttons), at most a quarter of idle_minutes (a longer one is cut to that). 0: no warning."

  validation {
    # Not compared with idle_minutes: the instance warns at most a quarter of it ahead, so a short
    # idle_minutes (a test stack's 1) works with the default.
    condition     = var.warn_minutes >= 0
    error_message = "warn_minutes must be 0 (no warning) or more, such as 5."
  }
}
