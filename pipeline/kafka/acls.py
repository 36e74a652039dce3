"""The ACLs a pipeline principal needs on a cluster that runs an authorizer.

Ingest, consumers, the sink and the rollout controller read and write the project's topics, join
consumer groups, and run transactions; they never alter the cluster itself (ACLs, quotas, broker
configs), so a leaked pipeline password cannot grant itself more.
"""

from __future__ import annotations

from kafka.admin import ACL, ACLOperation, ACLPermissionType, KafkaAdminClient, ResourcePattern, ResourceType

from pipeline.errors import KafkaUnavailableError

# (resource, name, operations); "*" is Kafka's wildcard for every resource of that type
PIPELINE_GRANTS: tuple[tuple[ResourceType, str, tuple[ACLOperation, ...]], ...] = (
    (ResourceType.TOPIC, "*", (ACLOperation.ALL,)),
    (ResourceType.GROUP, "*", (ACLOperation.ALL,)),
    (ResourceType.TRANSACTIONAL_ID, "*", (ACLOperation.ALL,)),
    (ResourceType.CLUSTER, "kafka-cluster",
     (ACLOperation.DESCRIBE, ACLOperation.DESCRIBE_CONFIGS, ACLOperation.IDEMPOTENT_WRITE)),
)  # fmt: skip


def pipeline_acls(user: str) -> list[ACL]:
    return [
        ACL(principal=f"User:{user}", host="*", operation=op, permission_type=ACLPermissionType.ALLOW,
            resource_pattern=ResourcePattern(resource, name))
        for resource, name, ops in PIPELINE_GRANTS
        for op in ops
    ]  # fmt: skip


def grant_pipeline(admin: KafkaAdminClient, users: list[str]) -> int:
    """Create the pipeline's ACLs for ``users`` (idempotent: an ACL that exists is kept); returns how many."""
    acls = [acl for user in users for acl in pipeline_acls(user)]
    if not acls:
        return 0
    result = admin.create_acls(acls)
    if result["failed"]:
        raise KafkaUnavailableError(
            f"the broker refused {len(result['failed'])} of the pipeline's ACLs for "
            f"{', '.join(users)}: {result['failed'][0].__name__}"
        )
    return len(acls)


__all__ = ["PIPELINE_GRANTS", "grant_pipeline", "pipeline_acls"]
