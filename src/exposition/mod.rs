//! What a scrape gets: the families collected (merged with workers' reports, and the process metrics),
//! rendered in the format the client asked for.

mod format;
pub mod protobuf;
mod select;
pub mod text;

pub use format::{accepts_gzip, negotiate_format, Format};

use crate::distributed::Node;
use crate::metrics::{collect_process, Collected};

/// What the endpoint serves: every metric of the node, and the process metrics (a registered family of
/// the same name wins).
pub fn served(node: &Node) -> Collected {
    let mut families = node.collect();
    let process: Collected = collect_process()
        .into_iter()
        .filter(|(p, _)| families.iter().all(|(d, _)| d.name != p.name))
        .collect();
    families.extend(process);
    families.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    families
}

/// The body of a scrape of `node` in any format, keeping only the families named in `only` (if any).
pub fn scrape(node: &Node, format: Format, only: &[String]) -> Vec<u8> {
    let served = served(node);
    match format {
        Format::Protobuf => protobuf::render(&served, only, &node.registry.const_labels()),
        _ => render_text(node, &served, format, only).into_bytes(),
    }
}

/// The registry's metrics alone (no process metrics) in a text format: what stays the same from one call
/// to the next while nothing is recorded.
pub fn registry_text(node: &Node, format: Format, only: &[String]) -> String {
    render_text(node, &node.collect(), format, only)
}

/// Text in a buffer sized like the node's previous one, so a large page is not copied over and over as
/// it grows.
fn render_text(node: &Node, collected: &Collected, format: Format, only: &[String]) -> String {
    let registry = &node.registry;
    let out = text::render(
        collected,
        format,
        only,
        &registry.const_labels(),
        registry.render_size_hint(),
    );
    registry.note_render_size(out.len());
    out
}
