"""Column names, relation names and default thresholds shared by the Spark jobs.

Tests and deployments override thresholds through the stage configs, not by editing
this module; it only fixes the vocabulary of the table contracts (docs/architecture.md).
"""

# raw tables
USER_ID = "user_id"
ITEM_ID = "item_id"
EVENT = "event"
WEIGHT = "weight"
TS = "ts"
BATCH_ID = "batch_id"
DOMAIN = "domain"
TITLE = "title"
FIRST_SEEN = "first_seen"
RELATION = "relation"
CONCEPT = "concept"

INTERACTION_COLUMNS = (USER_ID, ITEM_ID, EVENT, WEIGHT, TS)
CATALOG_COLUMNS = (ITEM_ID, DOMAIN, TITLE)
CONCEPT_COLUMNS = (ITEM_ID, RELATION, CONCEPT)

# quarantine
SOURCE = "source"
LINE = "line"  # the rejected row's line (CSV) or row (Parquet) in its input, 1-based
ROW = "row"
REASON = "reason"
QUARANTINED_AT = "ts"

# co-engagement edges
SRC = "src"
DST = "dst"
SUPPORT = "support"
SCORE = "score"

# knowledge graph
NODE_ID = "node_id"
NODE_TYPE = "node_type"
KEY = "key"
SRC_TYPE = "src_type"
DST_TYPE = "dst_type"
ENTITY = "entity"
EEL = "coengaged"  # relation name of entity-entity co-engagement links
COMPONENT = "component"
DEGREE = "degree"

# defaults
DEFAULT_WINDOW_DAYS = 30
DEFAULT_MAX_ITEMS_PER_USER = 200
DEFAULT_MIN_SUPPORT = 2
DEFAULT_TOP_K = 50
DEFAULT_MIN_CONCEPT_ENTITIES = 2
DEFAULT_MAX_CONCEPT_FANOUT = 5000
DEFAULT_MAX_QUARANTINE_SHARE = 0.05
