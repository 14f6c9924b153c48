//! `timeline.html`: the run as one self-contained page that works offline.
//! The page (HTML, CSS and the script that draws it) is the asset
//! `timeline.html` beside this file; the run's [`Timeline`] goes into it
//! as JSON, in a `<script type="application/json">` element.

use super::spans::Timeline;
use anyhow::{Context, Result};
use serde_json::json;

/// The page, with [`DATA`] where the run's data goes.
const TEMPLATE: &str = include_str!("timeline.html");

/// Where the data goes in [`TEMPLATE`].
const DATA: &str = "{{RUN_DATA}}";

/// Height of one row of the chart, pixels (the page draws with it).
pub const ROW_PX: u32 = 18;

/// Pixels above the rows (the page's bar, legend and time axis) and
/// below them, with room to spare.
const ABOVE_ROWS_PX: u32 = 100;
const BELOW_ROWS_PX: u32 = 30;

/// Width of the screenshot, pixels.
pub const SHOT_WIDTH: u32 = 1600;

/// The tallest screenshot taken, pixels (Chromium's own limit is larger).
const SHOT_MAX_HEIGHT: u32 = 12_000;

/// The page of `t`.
pub fn render(t: &Timeline) -> Result<String> {
    let data = serde_json::to_string(&json!({ "row_px": ROW_PX, "timeline": t }))
        .context("cannot serialise the timeline")?;
    // Inside <script> the HTML parser ends the element at `</script`, even
    // within a JSON string. JSON has `<` only inside strings, where
    // `\u003c` reads the same.
    let data = data.replace('<', "\\u003c");
    let (head, tail) = TEMPLATE
        .split_once(DATA)
        .context("the timeline page has no place for its data")?;
    Ok(format!("{head}{data}{tail}"))
}

/// Rows the page draws: the master's (a header, windows, sessions), the
/// bus's (a header, faults, actions, a row per cut link), and a header per
/// segment and type with a lane per node. Keep in step with `layout()` in
/// the page.
pub fn rows(t: &Timeline) -> usize {
    1 + t.window_rows() + t.session_rows() + 3 + t.links().len() + t.groups().len() + t.lanes.len()
}

/// The screenshot's size: the whole chart, `SHOT_WIDTH` wide.
pub fn shot_size(t: &Timeline) -> (u32, u32) {
    let rows = u32::try_from(rows(t)).unwrap_or(u32::MAX);
    let h = rows
        .saturating_mul(ROW_PX)
        .saturating_add(ABOVE_ROWS_PX + BELOW_ROWS_PX);
    (SHOT_WIDTH, h.min(SHOT_MAX_HEIGHT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::spans::tests::timeline;

    #[test]
    fn the_page_embeds_the_data_once_and_fetches_nothing() {
        let page = render(&timeline()).unwrap();
        assert!(!page.contains(DATA));
        assert!(page.contains("\"title\":\"storm sample\""));
        let lower = page.to_lowercase();
        for remote in [
            "<link",
            "src=",
            "@import",
            "fetch(",
            "xmlhttprequest",
            "https://",
        ] {
            assert!(
                !lower.contains(remote),
                "the page must work offline: {remote}"
            );
        }
        // The only URL is the SVG namespace, which is a name, not a fetch.
        assert_eq!(
            lower.matches("http://").count(),
            lower.matches("http://www.w3.org/2000/svg").count()
        );
    }

    #[test]
    fn text_that_would_end_the_script_stays_inside_it() {
        let mut t = timeline();
        t.title = "</script><script>alert(1)</script><!--".into();
        let page = render(&t).unwrap();
        assert_eq!(
            page.matches("</script").count(),
            TEMPLATE.matches("</script").count()
        );
        assert!(page.contains(r#"\u003c/script>\u003cscript>alert(1)\u003c/script>\u003c!--"#));
        // And it reads back as the same text.
        let start = page.find("type=\"application/json\">").unwrap() + 24;
        let end = start + page[start..].find("</script>").unwrap();
        let v: serde_json::Value = serde_json::from_str(&page[start..end]).unwrap();
        assert_eq!(v["timeline"]["title"], t.title);
        assert_eq!(v["row_px"], ROW_PX);
    }

    #[test]
    fn the_screenshot_holds_every_row() {
        let t = timeline();
        // master 1 + 1 window row + 2 session rows; bus 3 + 1 link; one
        // group of drives, one of xys, a lane each.
        assert_eq!(rows(&t), 1 + 1 + 2 + 3 + 1 + 2 + 2);
        assert_eq!(shot_size(&t), (SHOT_WIDTH, 12 * ROW_PX + 130));
    }
}
