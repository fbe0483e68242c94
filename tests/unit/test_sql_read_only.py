"""SQL checks are read-only from the config on: anything but one SELECT/WITH statement is
refused at load, with the reason and the line; strings and comments neither hide a
statement nor count as one."""

import pytest

from beamwatch.config import ConfigError, load_config
from beamwatch.config.schema import read_only_problem


@pytest.mark.parametrize("query,reason", [
    ("INSERT INTO queue VALUES (1)", "only SELECT or WITH queries are allowed (read-only), "
                                     "not INSERT"),
    ("SELECT 1; DROP TABLE x", "one statement only"),
    ("WITH gone AS (DELETE FROM queue RETURNING 1) SELECT count(*) FROM gone",
     "'DELETE' has no place in a read-only query"),
    ("SELECT * INTO copy FROM queue", "'INTO' has no place"),
    ("/* a harmless comment */ DELETE FROM queue", "not DELETE"),
    ("SELECT 1 -- the comment ends at the line\n; DROP TABLE x", "one statement only"),
    ("SELECT 1 /*! ; DROP TABLE x */", "no executable comments"),
    ("SELECT * FROM queue /*M! INTO OUTFILE '/tmp/q' */", "no executable comments"),
    # MySQL reads \' as a quote inside the string, PostgreSQL does not: refused under either
    ("SELECT 'a\\' ; DROP TABLE x; -- '", "one statement only"),
    ("SELECT '\\' -- ', 1; DROP TABLE x", "one statement only"),
    ("SELECT 1 # MySQL comment, PostgreSQL operator; DROP TABLE x", "one statement only"),
    ("SELECT 1 --1; DROP TABLE x", "one statement only"),  # MySQL: 1 - -1, no comment
    ("   ", "empty"),
])
def test_writes_and_hidden_statements_are_refused(query, reason):
    problem = read_only_problem(query)
    assert problem is not None and reason in problem


@pytest.mark.parametrize("query", [
    "SELECT count(*) FROM queue",
    "select count(*) from queue where status = 'queued';",
    "SELECT count(*) FROM queue WHERE note = 'a;b; DROP TABLE x'",  # a ';' in a string
    "SELECT count(*) FROM queue WHERE note = 'it''s; fine'",
    "SELECT 1 /* ; DROP TABLE x */",  # a comment is not run
    "SELECT 1 -- ; DROP TABLE x",
    'SELECT "Delete", updated_at FROM queue',  # a quoted name, and a word containing one
    "WITH q AS (SELECT * FROM queue) SELECT count(*) FROM q",
])
def test_plain_reads_pass(query):
    assert read_only_problem(query) is None


def test_a_writing_query_is_refused_at_load_with_its_line(tmp_path):
    cfg = tmp_path / "bw.yaml"
    cfg.write_text("beamline: I04\n"
                   "sources:\n  ispyb: {kind: sql, url: 'sqlite:///ispyb.db'}\n"
                   "checks:\n"
                   "  - {id: ok, source: ispyb, query: 'SELECT count(*) FROM q'}\n"
                   "  - {id: sneaky, source: ispyb, query: 'SELECT 1; DROP TABLE q'}\n")
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    [issue] = info.value.issues
    assert issue.line == 6
    assert "query: one statement only" in str(issue)
