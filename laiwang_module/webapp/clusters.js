// Clusters: mine, discover (with the acquaintances in each), create, join by asking, and the
// invitation tree drawn as SVG.
import * as api from "./api.js";
import { h, s, clear, notice, busy, localpart } from "./dom.js";
import { t } from "./i18n.js";

// A tidy layered layout: leaves get consecutive columns, a parent sits over its children.
// Members whose inviter is not in the tree (the creator, or an inviter who left) are roots.
export function layoutTree(nodes) {
  const byId = new Map(nodes.map((n) => [n.user_id, n]));
  const children = new Map(nodes.map((n) => [n.user_id, []]));
  const roots = [];
  for (const n of nodes) {
    if (n.invited_by && byId.has(n.invited_by) && n.invited_by !== n.user_id) children.get(n.invited_by).push(n);
    else roots.push(n);
  }
  const pos = new Map();
  let column = 0;
  const place = (n, level, seen) => {
    if (seen.has(n.user_id)) return;
    seen.add(n.user_id);
    const kids = children.get(n.user_id).filter((k) => !seen.has(k.user_id));
    kids.forEach((k) => place(k, level + 1, seen));
    const placed = kids.filter((k) => pos.has(k.user_id)).map((k) => pos.get(k.user_id).x);
    const x = placed.length ? (Math.min(...placed) + Math.max(...placed)) / 2 : column++;
    pos.set(n.user_id, { x, level });
  };
  const seen = new Set();
  roots.forEach((r) => place(r, 0, seen));
  nodes.forEach((n) => place(n, 0, seen)); // anything left in a loop
  return { pos, columns: Math.max(column, 1), levels: Math.max(0, ...[...pos.values()].map((p) => p.level)) + 1 };
}

export function treeSvg(tree, topic) {
  const { pos, columns, levels } = layoutTree(tree.nodes);
  const W = 110;
  const H = 96;
  const width = columns * W + 20;
  const height = levels * H + 20;
  const cx = (p) => 10 + p.x * W + W / 2;
  const cy = (p) => 10 + p.level * H + 24;
  const svg = s(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-labelledby": "tree-title", class: "tree" },
    s("title", { id: "tree-title" }, t("clusters.treeOf", { topic, size: tree.size, depth: tree.max_depth })),
  );
  for (const n of tree.nodes) {
    const p = pos.get(n.user_id);
    const parent = n.invited_by && pos.get(n.invited_by);
    if (p && parent && n.invited_by !== n.user_id) {
      // From under the inviter's name to the top of the member's circle.
      svg.append(s("line", { x1: cx(parent), y1: cy(parent) + 40, x2: cx(p), y2: cy(p) - 17, class: "edge" }));
    }
  }
  for (const n of tree.nodes) {
    const p = pos.get(n.user_id);
    svg.append(
      s(
        "g",
        { class: "node" },
        s("circle", { cx: cx(p), cy: cy(p), r: 16 }),
        s("text", { x: cx(p), y: cy(p) + 5, "text-anchor": "middle", class: "initial" }, localpart(n.user_id).slice(0, 1).toUpperCase()),
        s("text", { x: cx(p), y: cy(p) + 34, "text-anchor": "middle" }, localpart(n.user_id).slice(0, 14)),
      ),
    );
  }
  return svg;
}

// The same tree as nested lists, for screen readers and small screens.
function treeList(tree) {
  const children = new Map();
  const ids = new Set(tree.nodes.map((n) => n.user_id));
  const roots = [];
  for (const n of tree.nodes) {
    if (n.invited_by && ids.has(n.invited_by)) {
      if (!children.has(n.invited_by)) children.set(n.invited_by, []);
      children.get(n.invited_by).push(n);
    } else roots.push(n);
  }
  const seen = new Set();
  const item = (n) => {
    seen.add(n.user_id);
    const kids = (children.get(n.user_id) || []).filter((k) => !seen.has(k.user_id));
    return h("li", {}, n.user_id, kids.length ? h("ul", {}, kids.map(item)) : null);
  };
  return h("ul", { class: "tree-list" }, roots.map(item));
}

function showTree(box, roomId, topic, out) {
  return (async () => {
    const tree = await api.lw("GET", `/clusters/${api.enc(roomId)}/tree`);
    clear(
      box,
      h("h3", { id: "tree-heading" }, t("clusters.tree", { topic })),
      h("p", { class: "muted" }, t("clusters.treeSummary", { size: tree.size, depth: tree.max_depth })),
      h("div", { class: "tree-scroll", tabindex: "0", role: "group", "aria-labelledby": "tree-heading" }, treeSvg(tree, topic)),
      h("details", {}, h("summary", {}, t("clusters.treeAsList")), treeList(tree)),
    );
    box.hidden = false;
    box.scrollIntoView({ block: "nearest" });
  })().catch((e) => out.show(e.message, "error"));
}

export function clustersPage(main) {
  const out = notice();
  const mine = h("ul", { class: "list", id: "my-clusters" });
  const discover = h("ul", { class: "list", id: "discover-clusters" });
  const treeBox = h("section", { class: "card", id: "tree", hidden: true, "aria-live": "polite" });
  const topic = h("input", { id: "cluster-topic", required: true, maxlength: 200, "aria-label": t("clusters.topic") });
  const invitees = h("fieldset", { class: "checks" }, h("legend", {}, t("clusters.invite")));
  const create = h("button", { type: "submit" }, t("clusters.create"));
  async function load() {
    try {
      const [m, d, c] = await Promise.all([api.lw("GET", "/clusters"), api.lw("GET", "/clusters/discover"), api.lw("GET", "/contacts")]);
      clear(mine, m.clusters.length ? null : h("li", { class: "muted" }, t("clusters.noneMine")));
      for (const cl of m.clusters) {
        const b = h("button", { type: "button", class: "secondary", "aria-label": t("clusters.showTree", { topic: cl.topic }) }, t("clusters.treeButton"));
        b.onclick = () => busy(b, out, () => showTree(treeBox, cl.room_id, cl.topic, out));
        mine.append(h("li", {}, h("span", { class: "grow" }, h("strong", {}, cl.topic), h("br"), h("span", { class: "muted" }, t("clusters.members", { n: cl.member_count }))), b));
      }
      clear(discover, d.clusters.length ? null : h("li", { class: "muted" }, t("clusters.noneDiscover")));
      for (const cl of d.clusters) {
        const b = h("button", { type: "button", "aria-label": t("clusters.askToJoin", { topic: cl.topic }) }, t("clusters.join"));
        b.onclick = () =>
          busy(b, out, async () => {
            out.show(t("clusters.asking"), "info");
            await api.lw("POST", `/clusters/${api.enc(cl.room_id)}/join`, {});
            await load();
          }, t("clusters.joined", { topic: cl.topic }));
        discover.append(
          h(
            "li",
            {},
            h("span", { class: "grow" }, h("strong", {}, cl.topic), h("br"), h("span", { class: "muted" }, t("clusters.members", { n: cl.member_count }), " · ", t("clusters.known", { names: cl.acquaintances.map(localpart).join(", ") }))),
            b,
          ),
        );
      }
      clear(invitees, h("legend", {}, t("clusters.invite")), c.contacts.length ? null : h("p", { class: "muted" }, t("contacts.noContacts")));
      for (const ct of c.contacts) {
        const id = `inv-${localpart(ct.user_id)}`;
        invitees.append(h("div", { class: "check" }, h("input", { type: "checkbox", id, value: ct.user_id }), h("label", { for: id }, ct.user_id)));
      }
    } catch (e) {
      out.show(e.message, "error");
    }
  }
  const form = h(
    "form",
    {
      onsubmit: (e) => {
        e.preventDefault();
        busy(create, out, async () => {
          const invite = [...invitees.querySelectorAll("input:checked")].map((i) => i.value);
          const r = await api.lw("POST", "/clusters", { topic: topic.value.trim(), invite });
          topic.value = "";
          await load();
          if (r.invite_failures && Object.keys(r.invite_failures).length) {
            out.show(t("clusters.inviteFailures", { list: Object.entries(r.invite_failures).map(([u, why]) => `${u}: ${why}`).join("; ") }), "error");
          }
        }, t("clusters.created"));
      },
    },
    h("label", { for: "cluster-topic" }, t("clusters.topic")),
    topic,
    invitees,
    create,
  );
  load();
  main.append(
    out,
    h("section", { class: "card", "aria-labelledby": "h-mine" }, h("h2", { id: "h-mine" }, t("clusters.mine")), mine),
    treeBox,
    h("section", { class: "card", "aria-labelledby": "h-discover" }, h("h2", { id: "h-discover" }, t("clusters.discover")), discover),
    h("section", { class: "card", "aria-labelledby": "h-create" }, h("h2", { id: "h-create" }, t("clusters.createTitle")), form),
  );
}
