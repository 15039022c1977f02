"""The report request grammar: a period, channel= and app=, and names that need quotes."""

import pytest

from reports.errors import ReportError
from reports.model import ReportFilter
from reports.request import parse_request


@pytest.mark.parametrize(
    ("text", "period", "report_filter"),
    [
        ("", "week", ReportFilter()),
        ('week app="R&D <beta> & тест"', "week", ReportFilter(app="R&D <beta> & тест")),
        ("app=Sales week", "week", ReportFilter(app="Sales")),
        ("channel=vk last week", "last week", ReportFilter(channel="vk")),
        ("yesterday канал=vk app=Main", "yesterday", ReportFilter(channel="vk", app="Main")),
        ("channel=vk last week app=Main", "last week", ReportFilter(channel="vk", app="Main")),
    ],
)
def test_a_request_splits_into_a_period_and_a_filter(
    text: str, period: str, report_filter: ReportFilter
) -> None:
    request = parse_request(text, default_period="week")
    assert (request.period_text, request.filter) == (period, report_filter)


@pytest.mark.parametrize(
    ("text", "example"),
    [
        # A period was given before the filter: what follows it is the rest of the name.
        ("week app=R&D <beta> & тест", 'app="R&D <beta> & тест"'),
        ("week app=Sales extra", 'app="Sales extra"'),
        ('week channel=vk app="Группа ВК" extra', 'app="Группа ВК extra"'),
        ("week channel=vk the best app=Main", 'channel="vk the best"'),
        # No period before, but words no period is written with.
        ("app=R&D <beta>", 'app="R&D <beta>"'),
    ],
)
def test_an_unquoted_name_with_spaces_is_told_to_be_quoted(text: str, example: str) -> None:
    with pytest.raises(ReportError) as refused:
        parse_request(text, default_period="week")
    assert refused.value.message == f"A name with spaces goes in quotes: {example}"
