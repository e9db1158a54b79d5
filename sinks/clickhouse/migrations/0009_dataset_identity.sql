-- Datasets known under more than one identity: the `symlinks` dataset facet (e.g. a Hive table
-- and its storage location). A dataset node stating the facet keeps the identifiers as the node
-- attribute `symlinks` (JSON list of dataset ids); nothing else is stored, so these views answer
-- from the nodes table whenever the facet arrived, before or after the lineage that uses a name.
--
-- dataset_identity: one row per dataset id that is linked to another, with its group's canonical
-- id. A group is what a node's links reach in two hops (a node stating several identifiers, or two
-- nodes stating each other); its canonical id is the least id among the group's nodes that stated
-- the facet, so it is a dataset the events named (with a namespace and name) and the choice does
-- not depend on arrival order. Ids that are in no group are their own canonical id.
CREATE VIEW IF NOT EXISTS dataset_identity AS
WITH
    links AS
    (
        SELECT DISTINCT node_id AS a, arrayJoin(JSONExtract(attributes['symlinks'], 'Array(String)')) AS b
        FROM nodes
        WHERE node_type = 'dataset' AND attributes['symlinks'] != ''
    ),
    pairs AS
    (
        SELECT a AS x, b AS y FROM links WHERE a != b
        UNION ALL
        SELECT b AS x, a AS y FROM links WHERE a != b
    )
SELECT
    p1.x AS node_id,
    arrayMin(arrayFilter(m -> has((SELECT groupUniqArray(a) FROM links), m),
                         arrayDistinct(arrayConcat([p1.x], groupArray(p1.y), groupArray(p2.y))))) AS canonical
FROM pairs AS p1
INNER JOIN pairs AS p2 ON p2.x = p1.y
GROUP BY p1.x;
