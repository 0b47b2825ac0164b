"""In a real browser, on a fixed run written into the server's home: the constraint panel recommends the right
point and stars it, the bounds survive a reload, and History reopens the past run (also from its address)."""
from __future__ import annotations

import pytest

from tests.e2e.conftest import require_browser, streamlit_server
from tests.fixed_run import EXPECTED_LOSS_1_LABEL, RUN_ID, write_fixed_run

APP = '[data-testid="stApp"]'
STAR_JS = """() => {
  for (const g of document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot')) {
    const t = (g.data || []).find(t => t.name === 'recommended');
    if (t) return t.customdata[0][0];
  }
  return null;
}"""


def wait_idle(page, timeout=60_000):
    page.wait_for_timeout(300)
    page.wait_for_selector(f'{APP}[data-test-connection-state="CONNECTED"]', timeout=timeout)
    page.wait_for_selector(f'{APP}[data-test-script-state="notRunning"]', timeout=timeout)


@pytest.fixture(scope="module")
def fixed_server(tmp_path_factory):
    require_browser()
    from gemini_core.results.store import Store

    base = tmp_path_factory.mktemp("e2e_explorer")
    (base / "home").mkdir()
    ids = write_fixed_run(Store(base / "home" / "gemini.sqlite"))
    with streamlit_server(base) as info:
        yield {**info, "ids": ids}


def test_constraint_panel_recommends_the_right_point_and_keeps_bounds_over_a_reload(fixed_server, page):
    from playwright.sync_api import expect

    url, ids = fixed_server["url"], fixed_server["ids"]
    want = ids[EXPECTED_LOSS_1_LABEL]
    page.goto(url)
    expect(page.get_by_text("Which point should I ship?")).to_be_visible(timeout=90_000)
    wait_idle(page)
    expect(page.get_by_text(f"Ship point #{want} ({EXPECTED_LOSS_1_LABEL})")).to_be_visible()
    page.wait_for_selector('[data-testid="stPlotlyChart"] .js-plotly-plot .scatterlayer .trace')
    page.wait_for_function(STAR_JS)
    assert page.evaluate(STAR_JS) == want

    # a latency bound nothing meets: the panel says so and names the closest point
    box = page.get_by_role("textbox", name="max latency p50 (ms)")
    box.fill("0.5")
    box.press("Enter")
    wait_idle(page)
    expect(page.get_by_text("No point meets accuracy loss ≤ 1 points, latency p50 ≤ 0.5 ms")).to_be_visible()
    assert "ship_lat=0.5" in page.url

    # switch to a minimum accuracy of 95%: the most-gain point above it
    page.get_by_text("at least this accuracy (%)").click()
    wait_idle(page)
    acc = page.get_by_role("textbox", name="accuracy (%)", exact=True)
    acc.fill("95")
    acc.press("Enter")
    wait_idle(page)
    expect(page.get_by_text(f"Ship point #{ids['l1 0.5 · 8-bit']} ")).to_be_visible()

    # reload: a new session, same bounds and the same answer
    page.reload()
    expect(page.get_by_text("Which point should I ship?")).to_be_visible(timeout=60_000)
    wait_idle(page)
    expect(page.get_by_role("textbox", name="max latency p50 (ms)")).to_have_value("0.5")
    expect(page.get_by_text(f"Ship point #{ids['l1 0.5 · 8-bit']} ")).to_be_visible()
    page.wait_for_function(STAR_JS)
    assert page.evaluate(STAR_JS) == ids["l1 0.5 · 8-bit"]


def test_history_reopens_a_past_run_from_its_address(fixed_server, page):
    from playwright.sync_api import expect

    url, ids = fixed_server["url"], fixed_server["ids"]
    page.goto(f"{url}/History?run={RUN_ID}")
    expect(page.get_by_role("heading", name="History")).to_be_visible(timeout=90_000)
    wait_idle(page)
    expect(page.get_by_text(f"Ship point #{ids[EXPECTED_LOSS_1_LABEL]} ")).to_be_visible()
    page.wait_for_selector('[data-testid="stPlotlyChart"] .js-plotly-plot .scatterlayer .trace')
    titles = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
        .map(g => (g.layout && g.layout.title && g.layout.title.text) || '')""")
    shown = " ".join(titles)   # Streamlit wraps titles in <b>
    assert "Accuracy vs latency" in shown and "Sparse vs dense execution" in shown
    expect(page.get_by_text("All points (7)")).to_be_visible()


def test_report_download_has_a_glossary_and_stays_under_1_mb(fixed_server, page, tmp_path):
    from playwright.sync_api import expect

    page.goto(f"{fixed_server['url']}/Report")
    expect(page.get_by_role("heading", name="Report")).to_be_visible(timeout=90_000)
    wait_idle(page)
    expect(page.get_by_text("test examples, so it is uncertain by about")).to_be_visible()
    with page.expect_download(timeout=120_000) as info:
        page.get_by_role("button", name="Download the HTML report").click()
    path = tmp_path / "report.html"
    info.value.save_as(path)
    data = path.read_bytes()
    assert len(data) < 1_000_000, len(data)
    text = data.decode("utf-8")
    glossary = text.split("<h2>Glossary</h2>")[1].split("</dl>")[0]
    for term in ("ft60", "l1-structured", "per-channel", "p50", "MACs"):
        assert term in glossary, term
    assert "360 examples" in text and "<details>" in text


def test_choices_survive_a_server_restart(tmp_path, page):
    """The run opened in History and the Sweep form come back after the server process is restarted (they
    are kept in the home folder's ui_state.json), with no query parameters in the address."""
    require_browser()
    from playwright.sync_api import expect

    from gemini_core.results.store import Store

    (tmp_path / "home").mkdir()
    ids = write_fixed_run(Store(tmp_path / "home" / "gemini.sqlite"))
    with streamlit_server(tmp_path) as info:
        page.goto(f"{info['url']}/History?run={RUN_ID}")
        expect(page.get_by_role("heading", name="History")).to_be_visible(timeout=90_000)
        wait_idle(page)
        expect(page.get_by_text(f"Ship point #{ids[EXPECTED_LOSS_1_LABEL]} ")).to_be_visible()
        page.goto(f"{info['url']}/Sweep")
        expect(page.get_by_role("heading", name="Sweep")).to_be_visible(timeout=60_000)
        wait_idle(page)
        name = page.get_by_placeholder("e.g. l1 vs 2:4 at 8 bits")
        name.fill("kept after a restart")
        name.press("Enter")
        wait_idle(page)
    assert "kept after a restart" in (tmp_path / "home" / "ui_state.json").read_text()
    with streamlit_server(tmp_path) as info:  # a new server process on the same home
        page.goto(f"{info['url']}/Sweep")
        expect(page.get_by_role("heading", name="Sweep")).to_be_visible(timeout=90_000)
        wait_idle(page)
        expect(page.get_by_placeholder("e.g. l1 vs 2:4 at 8 bits")).to_have_value("kept after a restart")
        page.goto(f"{info['url']}/History")
        expect(page.get_by_role("heading", name="History")).to_be_visible(timeout=60_000)
        wait_idle(page)
        expect(page.get_by_text(f"Ship point #{ids[EXPECTED_LOSS_1_LABEL]} ")).to_be_visible()
