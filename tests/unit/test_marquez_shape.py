import pytest

from sinks.marquez import NodeIdError, NodeRef, lineage_graph, parse_node_id


def test_parse_node_id_keeps_colons_in_namespace() -> None:
    assert parse_node_id("dataset:postgres://crm:5432:public.customers") == NodeRef(
        "dataset", "postgres://crm:5432", "public.customers")
    assert parse_node_id("job:etl:daily") == NodeRef("job", "etl", "daily")


@pytest.mark.parametrize("bad", ["", "run:x:y", "dataset:", "dataset:onlyname", "job::name", "dataset:ns:"])
def test_parse_node_id_refuses(bad: str) -> None:
    with pytest.raises(NodeIdError):
        parse_node_id(bad)


def test_graph_matches_hand_written_marquez_document() -> None:
    src = NodeRef("dataset", "pg", "raw")
    job = NodeRef("job", "etl", "clean")
    out = NodeRef("dataset", "pg", "clean")
    doc = lineage_graph(out, [(src, job), (job, out)])
    assert doc == {"graph": [
        {"id": "dataset:pg:clean", "type": "DATASET", "data": {"namespace": "pg", "name": "clean"},
         "inEdges": [{"origin": "job:etl:clean", "destination": "dataset:pg:clean"}], "outEdges": []},
        {"id": "dataset:pg:raw", "type": "DATASET", "data": {"namespace": "pg", "name": "raw"},
         "inEdges": [], "outEdges": [{"origin": "dataset:pg:raw", "destination": "job:etl:clean"}]},
        {"id": "job:etl:clean", "type": "JOB", "data": {"namespace": "etl", "name": "clean"},
         "inEdges": [{"origin": "dataset:pg:raw", "destination": "job:etl:clean"}],
         "outEdges": [{"origin": "job:etl:clean", "destination": "dataset:pg:clean"}]},
    ]}


def test_lone_start_node_is_listed() -> None:
    start = NodeRef("job", "etl", "x")
    assert lineage_graph(start, []) == {"graph": [
        {"id": "job:etl:x", "type": "JOB", "data": {"namespace": "etl", "name": "x"}, "inEdges": [], "outEdges": []}]}
