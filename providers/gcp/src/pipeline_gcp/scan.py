"""pulumi-gcp resources as the Terraform resources they are bridged from, for scanners (see pipeline.scan).

pulumi-gcp 10 bridges `hashicorp/google` 7 (and `google-beta` for beta-only resources); fields are
camelCased Terraform names except where listed in `renames` (the bridge pluralises list blocks, e.g.
`lifecycle_rule` -> `lifecycleRules`). A planned type missing here fails the conversion loudly.
"""

from __future__ import annotations

from pipeline.scan import TerraformMapping, TerraformType

PROVIDER = "registry.terraform.io/hashicorp/google"
BETA = "registry.terraform.io/hashicorp/google-beta"

TYPES: dict[str, TerraformType] = {
    "gcp:cloudfunctionsv2/function:Function": TerraformType("google_cloudfunctions2_function"),
    "gcp:cloudrunv2/serviceIamMember:ServiceIamMember": TerraformType("google_cloud_run_v2_service_iam_member"),
    "gcp:cloudscheduler/job:Job": TerraformType("google_cloud_scheduler_job"),
    "gcp:logging/metric:Metric": TerraformType("google_logging_metric"),
    "gcp:monitoring/alertPolicy:AlertPolicy": TerraformType(
        "google_monitoring_alert_policy", {"alertStrategy.notificationChannelStrategies": "notification_channel_strategy"}),
    "gcp:monitoring/notificationChannel:NotificationChannel": TerraformType("google_monitoring_notification_channel"),
    "gcp:projects/iAMCustomRole:IAMCustomRole": TerraformType("google_project_iam_custom_role"),
    "gcp:projects/iAMMember:IAMMember": TerraformType("google_project_iam_member"),
    "gcp:projects/service:Service": TerraformType("google_project_service"),
    # Creating a service agent on demand exists only in the beta provider.
    "gcp:projects/serviceIdentity:ServiceIdentity": TerraformType("google_project_service_identity", provider=BETA),
    "gcp:pubsub/subscription:Subscription": TerraformType("google_pubsub_subscription"),
    "gcp:pubsub/subscriptionIAMMember:SubscriptionIAMMember": TerraformType("google_pubsub_subscription_iam_member"),
    "gcp:pubsub/topic:Topic": TerraformType("google_pubsub_topic"),
    "gcp:pubsub/topicIAMMember:TopicIAMMember": TerraformType("google_pubsub_topic_iam_member"),
    "gcp:serviceaccount/account:Account": TerraformType("google_service_account"),
    "gcp:serviceaccount/iAMMember:IAMMember": TerraformType("google_service_account_iam_member"),
    "gcp:storage/bucket:Bucket": TerraformType("google_storage_bucket", {"lifecycleRules": "lifecycle_rule"}),
    "gcp:storage/bucketIAMMember:BucketIAMMember": TerraformType("google_storage_bucket_iam_member"),
    "gcp:storage/bucketObject:BucketObject": TerraformType("google_storage_bucket_object"),
    "gcp:storage/notification:Notification": TerraformType("google_storage_notification"),
}

# Attributes the Terraform schema types as maps (keys are data), not nested blocks.
MAPS = frozenset({"labels", "user_labels", "effective_labels", "terraform_labels", "environment_variables", "headers",
                  "attributes", "metadata", "default_labels", "label_extractors", "custom_attributes"})

# Resources that are not Google's: nothing for a scanner to check.
UNSCANNED = {"random:index/randomId:RandomId": "the stack's name suffix, drawn by Pulumi's random provider and kept in the stack state: no Google resource"}

MAPPING = TerraformMapping(PROVIDER, TYPES, MAPS, UNSCANNED)
