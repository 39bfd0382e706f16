"""Channel validation, masking and scrubbing (ingest/delivery/channels.py)."""

from __future__ import annotations

import pytest

from ingest.delivery.channels import (
    ChannelError,
    ChannelSpec,
    mask_url,
    parse_channel,
    scrub,
)

SLACK = "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general"
DISCORD = "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js"
TGRAM = "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/12315544/"
MAIL = "mailto://trader:hunter22pass@gmail.com"


@pytest.mark.parametrize(("kind", "url"), [
    ("webhook", "http://127.0.0.1:8080/hook"),
    ("webhook", "https://hooks.example.com/services/T000/B000/XXXX?token=abc"),
    ("webhook", "http://[::1]:9/x"),
    ("slack", SLACK),
    ("slack", "https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ"),
    ("discord", DISCORD),
    ("telegram", TGRAM),
    ("email", MAIL),
])
def test_valid_channels_are_accepted(kind, url):
    spec = parse_channel({"kind": kind.upper(), "name": " desk ", "url": f" {url} "})
    assert spec == ChannelSpec(kind, "desk", url, None)


@pytest.mark.parametrize(("body", "field", "fragment"), [
    ({"kind": "pager", "name": "x", "url": "http://h/"}, "kind", "not one of"),
    ({"name": "x", "url": "http://h/"}, "kind", "is required"),
    ({"kind": "webhook", "url": "http://h/"}, "name", "is required"),
    ({"kind": "webhook", "name": "  ", "url": "http://h/"}, "name", "is required"),
    ({"kind": "webhook", "name": "x" * 81, "url": "http://h/"}, "name", "at most 80"),
    ({"kind": "webhook", "name": "x"}, "url", "is required"),
    ({"kind": "webhook", "name": "x", "url": "ftp://h/x"}, "url", "'ftp' is not allowed"),
    ({"kind": "webhook", "name": "x", "url": "file:///etc/passwd"}, "url", "not allowed"),
    ({"kind": "webhook", "name": "x", "url": "javascript:alert(1)"}, "url", "not allowed"),
    ({"kind": "webhook", "name": "x", "url": "http:///nohost"}, "url", "has no host"),
    ({"kind": "webhook", "name": "x", "url": "http://h:99999/"}, "url", "not a valid URL"),
    ({"kind": "webhook", "name": "x", "url": "http://h/a b"}, "url", "spaces"),
    ({"kind": "webhook", "name": "x", "url": "not a url"}, "url", "not allowed"),
    ({"kind": "slack", "name": "x", "url": "http://h/x"}, "url", "not a slack URL"),
    ({"kind": "slack", "name": "x", "url": "slack://bad"}, "url", "apprise cannot parse"),
    ({"kind": "telegram", "name": "x", "url": DISCORD}, "url", "not a telegram URL"),
    ({"kind": "email", "name": "x", "url": "mailto://"}, "url", "apprise cannot parse"),
    ({"kind": "slack", "name": "x", "url": SLACK, "secret": "s"}, "secret", "only a webhook"),
    ({"kind": "webhook", "name": "x", "url": "http://h/", "secret": 5}, "secret", "string"),
    ({"kind": "webhook", "name": "x", "url": "http://h/", "colour": 1}, "colour", "unknown"),
])
def test_invalid_channels_are_refused_naming_the_field(body, field, fragment):
    with pytest.raises(ChannelError) as info:
        parse_channel(body)
    assert field in info.value.fields and fragment in info.value.fields[field]
    assert field in str(info.value)


def test_every_bad_field_is_named_at_once():
    with pytest.raises(ChannelError) as info:
        parse_channel({"kind": "pager", "url": ""})
    assert set(info.value.fields) == {"kind", "name", "url"}
    with pytest.raises(ChannelError, match="body"):
        parse_channel(["not", "an", "object"])


def test_an_empty_secret_on_edit_keeps_the_old_one_and_null_removes_it():
    old = parse_channel({"kind": "webhook", "name": "d", "url": "http://h/", "secret": "k1"})
    assert old.secret == "k1"
    assert parse_channel({"kind": "webhook", "name": "d", "url": "http://h/"},
                         old=old).secret == "k1"
    assert parse_channel({"kind": "webhook", "name": "d", "url": "http://h/",
                          "secret": ""}, old=old).secret == "k1"
    assert parse_channel({"kind": "webhook", "name": "d", "url": "http://h/",
                          "secret": "k2"}, old=old).secret == "k2"
    assert parse_channel({"kind": "webhook", "name": "d", "url": "http://h/",
                          "secret": None}, old=old).secret is None


@pytest.mark.parametrize(("kind", "url", "shown"), [
    ("webhook", "http://127.0.0.1:8080/hook", "http://127.0.0.1:8080/hook"),
    ("webhook", "https://hooks.example.com/services/T000/B000/XXXX",
     "https://hooks.example.com/services/****/****/****"),
    ("webhook", "https://u:pw@relay.example.com/in?token=abc123&x=",
     "https://****@relay.example.com/in?token=****&x=****"),
    ("webhook", "http://[::1]:9/alerts", "http://[::1]:9/alerts"),
    ("slack", SLACK, "slack://****"),
    ("telegram", TGRAM, "tgram://****"),
    ("email", MAIL, "mailto://****"),
])
def test_urls_are_masked(kind, url, shown):
    assert mask_url(kind, url) == shown


@pytest.mark.parametrize(("kind", "url", "secret"), [
    ("webhook", "https://u:pw9x@relay.example.com/in/Tok3nPart?token=abc123", "s3cr3t-key"),
    ("slack", SLACK, None),
    ("telegram", TGRAM, None),
    ("email", MAIL, None),
])
def test_scrub_removes_every_token_from_a_message(kind, url, secret):
    text = (f"<urlopen error [Errno 111] Connection refused> while POSTing {url} "
            f"(path {url.split('://', 1)[1]}) with {secret}")
    out = scrub(text, kind, url, secret)
    hidden = [p for p in ("pw9x", "Tok3nPart", "abc123", "s3cr3t-key",
                          "TIiajkdnlazkcOXrIdevi7FQ", "A1BRTD4JD", "T1JJ3T3L2",
                          "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "hunter22pass") if p in text]
    assert hidden and not [p for p in hidden if p in out]
    assert "Connection refused" in out


def test_an_edit_without_url_or_with_the_masked_url_keeps_the_stored_one():
    url = "https://hooks.example.com/services/T000/B000/XXXX"
    old = parse_channel({"kind": "webhook", "name": "d", "url": url, "secret": "k"})
    assert parse_channel({"name": "d2"}, old=old) == ChannelSpec("webhook", "d2", url, "k")
    shown = mask_url("webhook", url)
    assert parse_channel({"kind": "webhook", "name": "d", "url": shown},
                         old=old).url == url
    moved = "https://hooks.example.com/services/T001/B000/YYYY"
    assert parse_channel({"name": "d", "url": moved}, old=old).url == moved
    with pytest.raises(ChannelError, match="url"):  # the mask alone is no new channel
        parse_channel({"kind": "webhook", "name": "d", "url": "ftp://****"}, old=old)
