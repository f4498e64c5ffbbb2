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
NODE_COLUMNS = (NODE_ID, NODE_TYPE, KEY, DOMAIN)
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

# What each column holds, shown beside the table schemas in the Dagster UI. Keyed by column
# name; COLUMN_DOCS_BY_TABLE overrides where one name means different things.
COLUMN_DOCS = {
    USER_ID: "Who engaged (opaque id from the input).",
    ITEM_ID: "The item's id in the catalogue (opaque id from the input).",
    EVENT: "Kind of engagement: view, click, like, add_to_cart, purchase...",
    WEIGHT: "Strength of the engagement (rows below min_weight do not count).",
    TS: "When it happened (UTC).",
    BATCH_ID: "The input batch the row came from (a hash of the input's content).",
    DOMAIN: "The item's domain (e.g. music, live).",
    TITLE: "The item's display title.",
    FIRST_SEEN: "When the lake first saw the item.",
    RELATION: "Relation of a triple or an edge (genre, tag, creator..., coengaged).",
    CONCEPT: "The concept an item is linked to (e.g. a genre's name).",
    SOURCE: "The input file or source the rejected row came from.",
    LINE: "The rejected row's line (CSV) or row (Parquet) in its input, 1-based.",
    ROW: "The rejected row as it was read.",
    REASON: "Why the row was rejected.",
    SRC: "Source node id.",
    DST: "Destination node id.",
    SUPPORT: "Users who engaged with both items within the window.",
    SCORE: "Co-engagement strength (cosine, PPMI or Jaccard of the two items' users).",
    NODE_ID: "Node id, dense within its node type.",
    NODE_TYPE: "entity (an item) or a concept type (genre, tag...).",
    KEY: "What the node stands for: the item id, or the concept's name.",
    SRC_TYPE: "Node type of src.",
    DST_TYPE: "Node type of dst.",
    "sampled": "Whether the concept was sampled down to max_concept_fanout entities.",
    "entity_id": "The item's entity node id in the knowledge graph.",
    "embedding": "The served vector.",
    "model_version": "The checkpoint version that produced the vector.",
    "log_degree": "log(1 + the entity's co-engagement degree): the popularity prior's input.",
    "inductive": "Embedded without a trained id (a new item, from its concepts and links).",
    "split": "train, validation, test or inductive (held out whole).",
    "file": "The inbox file.",
    "kind": "items or interactions.",
    "run_id": "The Dagster run that applied it.",
    "index_version": "The ann_index version that serves it.",
    "counts": "What the batch added, as JSON.",
}
COLUMN_DOCS_BY_TABLE = {
    ("quarantine", TS): "When the row was rejected (UTC).",
    ("coengagement_edges", SRC): "One item's id (src < dst).",
    ("coengagement_edges", DST): "The other item's id.",
    ("batch_updates", TS): "When the batch was applied (UTC).",
    ("knowledge_graph/nodes", DOMAIN): "An entity's domain in the catalog when the graph was "
    "built (null for concepts).",
}
