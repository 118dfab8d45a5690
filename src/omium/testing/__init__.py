"""Test doubles users may use too: the fake OpenAI-compatible server (``fake_server``)."""
