"""Research team: a LangGraph graph, a CrewAI crew and an AutoGen team weigh one claim against
the same sources, and Omium takes their vote (``workflow.yaml``; see ``README.md``)."""
