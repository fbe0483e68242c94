"""Rendering: default templates for every kind and format, user overrides, errors
that name the file and line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from beamwatch.model import Severity
from beamwatch.notify import FORMATS, KINDS, Message, Related, Renderer, TemplateError
from beamwatch.notify.render import sample_message


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_renders_in_every_format(renderer: Renderer, kind: str) -> None:
    for message in (sample_message(kind), sample_message(kind, minimal=True)):
        for fmt in FORMATS:
            if fmt == "blocks":
                blocks = renderer.blocks(message)
                assert blocks[0]["type"] == "header"
            else:
                assert renderer.render(fmt, message).strip()


def test_alarm_subject_and_text(renderer: Renderer) -> None:
    m = sample_message("alarm")
    assert renderer.render("subject", m) == (
        "[I04] MAJOR: DCM crystal temperature = 141.2 (+2 affected)"
    )
    text = renderer.render("text", m)
    assert "Severity:  MAJOR (was MINOR)" in text
    assert "Value:     141.2" in text
    assert "Since:     2026-09-21 15:13:20 BST" in text  # in the message's timezone
    assert "Root cause of 2 other alarms:" in text
    assert "- MAJOR Front end shutter (fe-shutter) = Closed [muted: DEPENDENCY]" in text
    assert "Dashboard: https://beamwatch.example.org/incidents/inc-42" in text


def test_a_forecast_says_so_in_the_subject_and_gives_its_time(renderer: Renderer) -> None:
    text = "forecast: 23 % falling 0.4 %/min: reaches 10 % (minor) in ~33 min, at 02:41"
    m = replace(sample_message("alarm"), text=text, severity=Severity.MINOR)
    assert renderer.render("subject", m).startswith("[I04] MINOR FORECAST: ")
    assert f"Message:   {text}" in renderer.render("text", m)
    assert renderer.render("subject", sample_message("alarm")).startswith("[I04] MAJOR: ")


def test_kind_specific_lines(renderer: Renderer) -> None:
    assert "Acknowledged by ana at" in renderer.render("text", sample_message("ack"))
    resolve = renderer.render("text", sample_message("resolve"))
    assert "Back to OK at 2026-09-21 15:23:20 BST after 10m." in resolve
    assert renderer.render("subject", sample_message("resolve")) == (
        "[I04] RESOLVED: DCM crystal temperature (was MAJOR)"
    )
    assert renderer.render("subject", sample_message("summary")) == "[I04] 2 active alarms"
    assert "STILL ACTIVE" in renderer.render("subject", sample_message("repeat"))
    assert "ESCALATED" in renderer.render("subject", sample_message("escalation"))


def test_subject_is_one_line(renderer: Renderer) -> None:
    m = replace(sample_message("alarm"), title="two\nlines   here")
    assert renderer.render("subject", m) == "[I04] MAJOR: two lines here = 141.2 (+2 affected)"


def test_html_is_escaped_and_text_is_not(renderer: Renderer) -> None:
    m = replace(sample_message("alarm"), title="<script>x</script> & co")
    html = renderer.render("html", m)
    assert "<script>" not in html
    assert "&lt;script&gt;x&lt;/script&gt; &amp; co" in html
    assert "<script>x</script> & co" in renderer.render("text", m)


def test_slack_mrkdwn_is_escaped(renderer: Renderer) -> None:
    m = replace(sample_message("alarm"), title="a < b & c > d", text="<!channel> hi")
    out = renderer.render("mrkdwn", m)
    assert "a &lt; b &amp; c &gt; d" in out
    assert "<!channel>" not in out and "&lt;!channel&gt; hi" in out
    assert out.startswith(":red_circle: *[I04] MAJOR:")


def test_blocks_are_valid_block_kit(renderer: Renderer) -> None:
    m = replace(sample_message("alarm"), title="x" * 300)
    blocks = renderer.blocks(m)
    json.dumps(blocks)
    header = blocks[0]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert len(header["text"]["text"]) <= 150
    fields = next(b for b in blocks if "fields" in b)["fields"]
    assert {"type": "mrkdwn", "text": "*Severity*\n:red_circle: MAJOR (was MINOR)"} in fields
    assert blocks[-1]["type"] == "context"
    assert "<https://beamwatch.example.org/incidents/inc-42|Open in beamwatch>" in json.dumps(
        blocks[-1])


def test_resolve_blocks_show_the_new_state(renderer: Renderer) -> None:
    text = json.dumps(renderer.blocks(sample_message("resolve")))
    assert "Back to OK at 2026-09-21 15:23:20 BST after 10m" in text


def test_summary_lists_alarms(renderer: Renderer) -> None:
    m = Message(
        kind="summary", beamline="I04", title="summary", severity=Severity.MAJOR,
        alarms=[Related("a", "Alpha", "major", "1"), Related("b", "Beta", "minor")],
    )
    text = renderer.render("text", m)
    assert "- MAJOR Alpha (a) = 1\n- MINOR Beta (b)\n" in text


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, body in files.items():
        (tmp_path / name).write_text(body)
    return tmp_path


def test_user_override_wins_and_defaults_fill_in(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {
        "alarm.text.j2": "ALARM {{ m.title }} {{ m.severity }} ({{ subject }})",
        "default.subject.j2": "{{ m.beamline }}: {{ m.title }}",
        "_helpers.j2": "{% macro x() %}x{% endmacro %}",
    })
    r = Renderer(folder)
    assert r.render("text", sample_message("alarm")) == (
        "ALARM DCM crystal temperature MAJOR (I04: DCM crystal temperature)\n"
    )
    assert r.render("mrkdwn", sample_message("ack")).startswith(
        ":red_circle: *I04: DCM crystal temperature*\n")
    assert r.template_name("alarm", "text") == "alarm.text.j2"
    assert r.template_name("ack", "text") == "default.text.j2"


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"alarm.text.j2": "line one\n{{ m.title }\nline three\n"})
    with pytest.raises(TemplateError) as e:
        Renderer(folder)
    assert e.value.file == str(folder / "alarm.text.j2")
    assert e.value.line == 2
    assert str(e.value).startswith(f"{folder / 'alarm.text.j2'}:2: ")


def test_undefined_variable_is_an_error_at_load_with_its_line(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"resolve.html.j2": "<p>\n{{ m.title }}\n{{ m.nope }}</p>\n"})
    with pytest.raises(TemplateError) as e:
        Renderer(folder)
    assert e.value.file == str(folder / "resolve.html.j2")
    assert e.value.line == 3
    assert "nope" in str(e.value)


def test_unknown_template_name_is_an_error(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"alarmm.text.j2": "x"})
    with pytest.raises(TemplateError, match="unknown template name; use KIND.FORMAT.j2"):
        Renderer(folder)


def test_blocks_that_are_not_json_are_an_error_at_load(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"default.blocks.j2": "[{'type': 'header'}]"})
    with pytest.raises(TemplateError, match="blocks are not JSON") as e:
        Renderer(folder)
    assert e.value.file == str(folder / "default.blocks.j2")


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="is not a folder"):
        Renderer(tmp_path / "nope")


def test_runtime_undefined_names_the_template(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"test.text.j2": "{{ m.labels.owner }}"})
    r = Renderer(folder, validate=False)
    with pytest.raises(TemplateError) as e:
        r.render("text", sample_message("test"))
    assert e.value.file == str(folder / "test.text.j2") and e.value.line == 1


@pytest.mark.parametrize("kind", ["alarm", "ack", "resolve", "repeat", "escalation"])
def test_description_and_runbook_are_in_every_format_of_every_alarm_message(kind):
    """What to do travels with the alarm: email (text, html), Slack (mrkdwn, blocks),
    Apprise (text), the webhook (its text field and its own fields)."""
    from beamwatch.notify.webhook import webhook_body

    r = Renderer()
    m = sample_message(kind)
    for fmt in ("text", "html", "mrkdwn"):
        out = r.render(fmt, m)
        assert "Check the LN2 flow on the DCM cryocooler" in out, fmt
        assert "Second crystal of the double-crystal monochromator" in out, fmt
    blocks = json.dumps(r.blocks(m))
    assert "Check the LN2 flow" in blocks and "Second crystal" in blocks
    body = webhook_body(m, r)
    assert body["runbook"].startswith("Guidance: Check the LN2 flow")
    assert body["description"] == "Second crystal of the double-crystal monochromator"


def test_a_check_without_runbook_has_no_empty_runbook_heading():
    m = sample_message("alarm", minimal=True)
    for fmt in ("text", "html", "mrkdwn"):
        assert "What to do" not in Renderer().render(fmt, m)
