"""The cross-domain holdout as a resource: the graph build, the user-item edges and the
evaluation read the same one, so they hold out the same rows."""

import dagster as dg
from pydantic import Field

from settings import config_field, current
from spark_jobs.domain_holdout import DomainHoldout


class CrossDomainResource(dg.ConfigurableResource):
    """Which domain is the target of the cross-domain evaluation (empty: none)."""

    target: str = config_field("cross_domain_target")
    cold_user_share: float = config_field("cross_domain_cold_user_share")
    new_item_share: float = config_field("cross_domain_new_item_share")
    seed: int = Field(0, description="Seed of the hash that chooses cold users and new items.")

    @property
    def holdout(self) -> DomainHoldout:
        return DomainHoldout(
            self.target,
            self.cold_user_share,
            self.new_item_share,
            self.seed,
            current().default_domain,
        )
