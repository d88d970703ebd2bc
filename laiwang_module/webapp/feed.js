// The feed: GET /feed newest first with infinite scroll on next_batch; posting to one's own
// timeline (text, music, shop item); react, comment (a thread reply), forward.
import * as api from "./api.js";
import { h, clear, notice, busy, localpart } from "./dom.js";
import { t, formatTime } from "./i18n.js";
import { formatAmount, isCurrency } from "./money.js";

let timelineRoomId = null;

export async function myTimeline() {
  if (!timelineRoomId) timelineRoomId = (await api.lw("GET", "/timeline")).room_id;
  return timelineRoomId;
}

export function resetTimelineCache() {
  timelineRoomId = null;
}

function composer(onPosted) {
  const out = notice();
  const kind = h(
    "select",
    { id: "post-kind", "aria-label": t("feed.kind"), onchange: () => showFields() },
    h("option", { value: "text" }, t("feed.kind.text")),
    h("option", { value: "music" }, t("feed.kind.music")),
    h("option", { value: "item" }, t("feed.kind.item")),
  );
  const text = h("textarea", { id: "post-text", rows: 3, "aria-label": t("feed.text"), placeholder: t("feed.placeholder") });
  const track = h("input", { id: "post-track", "aria-label": t("feed.track"), placeholder: "track1 / https://…/track/track1" });
  const item = h("input", { id: "post-item", "aria-label": t("feed.item"), placeholder: "item3 / https://…/item/item3" });
  const order = h("input", { id: "post-order", "aria-label": t("feed.order"), placeholder: t("feed.orderHint") });
  const textField = h("div", { class: "field" }, text);
  const musicField = h("div", { class: "field", hidden: true }, h("label", { for: "post-track" }, t("feed.track")), track);
  const itemField = h(
    "div",
    { class: "field", hidden: true },
    h("label", { for: "post-item" }, t("feed.item")),
    item,
    h("label", { for: "post-order" }, t("feed.order")),
    order,
  );
  function showFields() {
    textField.hidden = kind.value !== "text";
    musicField.hidden = kind.value !== "music";
    itemField.hidden = kind.value !== "item";
  }
  const ref = (v) => (/^https?:\/\//.test(v) ? { url: v } : null);
  const submit = h("button", { type: "submit", id: "post-submit" }, t("feed.post"));
  return h(
    "form",
    {
      class: "card composer",
      "aria-label": t("feed.compose"),
      onsubmit: (e) => {
        e.preventDefault();
        busy(submit, out, async () => {
          const roomId = await myTimeline();
          let posted;
          if (kind.value === "text") {
            const body = text.value.trim();
            if (!body) throw new Error(t("feed.empty"));
            posted = await api.sendMessage(roomId, { msgtype: "m.text", body });
            text.value = "";
          } else if (kind.value === "music") {
            const v = track.value.trim();
            if (!v) throw new Error(t("feed.empty"));
            posted = await api.lw("POST", "/shares/music", { room_id: roomId, ...(ref(v) || { track_id: v }) });
            track.value = "";
          } else {
            const v = item.value.trim();
            if (!v) throw new Error(t("feed.empty"));
            const body = { room_id: roomId, ...(ref(v) || { item_id: v }) };
            if (order.value.trim()) body.order_id = order.value.trim();
            posted = await api.lw("POST", "/shares/item", body);
            item.value = "";
            order.value = "";
          }
          await onPosted(posted.event_id);
        }, t("feed.posted"));
      },
    },
    h("label", { for: "post-kind" }, t("feed.kind")),
    kind,
    textField,
    musicField,
    itemField,
    submit,
    out,
  );
}

// The words of a post, by msgtype.
export function postBody(content) {
  const music = content["org.laiwang.share.music"];
  const item = content["org.laiwang.share.item"];
  if (music) {
    return h(
      "div",
      { class: "share music" },
      music.cover ? api.mxcImage(music.cover, "") : null,
      h("span", { class: "badge" }, t("feed.music")),
      h("strong", {}, music.title),
      " — ",
      music.artist,
      music.album ? h("span", { class: "muted" }, ` (${music.album})`) : null,
      " ",
      h("a", { href: music.url, rel: "noopener noreferrer", target: "_blank" }, t("feed.open")),
    );
  }
  if (item) {
    const price = item.price && isCurrency(item.price.currency) ? formatAmount(item.price.amount, item.price.currency) : "";
    return h(
      "div",
      { class: "share item" },
      item.image ? api.mxcImage(item.image, "") : null,
      h("span", { class: "badge" }, item.bought ? t("feed.bought") : t("feed.shop")),
      h("strong", {}, item.title),
      " · ",
      item.shop_name,
      " · ",
      price,
      " ",
      h("a", { href: item.url, rel: "noopener noreferrer", target: "_blank" }, t("feed.open")),
    );
  }
  return h("p", { class: "body" }, content.body || "");
}

function forwardLine(ev) {
  const fwd = ev.content && ev.content["org.laiwang.forward"];
  if (!fwd) return null;
  const unverified = ev.unsigned && ev.unsigned["org.laiwang.forward.verified"] === false;
  return h("p", { class: "muted forward" }, unverified ? t("feed.unverifiedForward") : t("feed.forwardedFrom", { user: fwd.sender }));
}

function postCard(ev, me) {
  const out = notice();
  const counts = h("span", { class: "counts" });
  let reactions = ev.reactions || 0;
  let comments = ev.comments || 0;
  const showCounts = () => {
    counts.textContent = t("feed.counts", { reactions, comments });
  };
  showCounts();
  const who = localpart(ev.sender);
  const commentsList = h("ul", { class: "comments", hidden: true, "aria-label": t("feed.comments") });
  const commentInput = h("input", { "aria-label": t("feed.commentOn", { user: who }), placeholder: t("feed.commentHint") });
  const commentButton = h("button", { type: "submit", class: "secondary" }, t("feed.comment"));
  const forwardInput = h("input", { "aria-label": t("feed.forwardComment", { user: who }), placeholder: t("feed.forwardHint") });
  const forwardButton = h("button", { type: "submit", class: "secondary" }, t("feed.forward"));
  const forwardForm = h(
    "form",
    {
      class: "inline",
      hidden: true,
      onsubmit: (e) => {
        e.preventDefault();
        busy(forwardButton, out, async () => {
          const body = { room_id: ev.room_id, event_id: ev.event_id };
          if (forwardInput.value.trim()) body.comment = forwardInput.value.trim();
          await api.lw("POST", "/shares/forward", body);
          forwardInput.value = "";
          forwardForm.hidden = true;
        }, t("feed.forwarded"));
      },
    },
    forwardInput,
    forwardButton,
  );
  async function loadComments() {
    const data = await api.call(
      "GET",
      `/_matrix/client/v1/rooms/${api.enc(ev.room_id)}/relations/${api.enc(ev.event_id)}/m.thread`,
      undefined,
      { query: { limit: 50, dir: "f" } },
    );
    clear(
      commentsList,
      (data.chunk || []).map((c) => h("li", {}, h("strong", {}, localpart(c.sender)), " ", (c.content && c.content.body) || "")),
    );
    commentsList.hidden = false;
  }
  const reactButton = h(
    "button",
    {
      type: "button",
      class: "secondary",
      "aria-label": t("feed.reactTo", { user: who }),
      onclick: () =>
        busy(reactButton, out, async () => {
          await api.sendEvent(ev.room_id, "m.reaction", {
            "m.relates_to": { rel_type: "m.annotation", event_id: ev.event_id, key: "👍" },
          });
          reactions += 1;
          showCounts();
        }),
    },
    t("feed.react"),
  );
  const commentForm = h(
    "form",
    {
      class: "inline",
      onsubmit: (e) => {
        e.preventDefault();
        const body = commentInput.value.trim();
        if (!body) return;
        busy(commentButton, out, async () => {
          await api.sendMessage(ev.room_id, {
            msgtype: "m.text",
            body,
            "m.relates_to": {
              rel_type: "m.thread",
              event_id: ev.event_id,
              is_falling_back: true,
              "m.in_reply_to": { event_id: ev.event_id },
            },
          });
          commentInput.value = "";
          comments += 1;
          showCounts();
          await loadComments();
        });
      },
    },
    commentInput,
    commentButton,
  );
  const showComments = h(
    "button",
    { type: "button", class: "link", "aria-label": t("feed.showComments", { user: who }), onclick: () => busy(showComments, out, loadComments) },
    t("feed.showCommentsShort"),
  );
  return h(
    "article",
    { class: "card post", "data-event-id": ev.event_id },
    h(
      "header",
      {},
      h("strong", { class: "author" }, ev.sender === me ? t("feed.me") : who),
      " ",
      h("time", { datetime: new Date(ev.origin_server_ts).toISOString(), class: "muted" }, formatTime(ev.origin_server_ts)),
    ),
    forwardLine(ev),
    postBody(ev.content || {}),
    h(
      "div",
      { class: "actions" },
      reactButton,
      h("button", { type: "button", class: "secondary", "aria-label": t("feed.forwardPost", { user: who }), onclick: () => { forwardForm.hidden = !forwardForm.hidden; if (!forwardForm.hidden) forwardInput.focus(); } }, t("feed.forward")),
      counts,
      showComments,
    ),
    forwardForm,
    commentsList,
    commentForm,
    out,
  );
}

export function feedPage(main) {
  const me = api.loadSession().user_id;
  const out = notice();
  const list = h("div", { class: "feed", "aria-live": "polite", id: "feed-list" });
  const sentinel = h("div", { class: "sentinel", "aria-hidden": "true" });
  const progress = h("p", { class: "muted", role: "status", hidden: true }, t("app.loading"));
  const more = h("button", { type: "button", class: "secondary", id: "feed-more", hidden: true, onclick: () => loadPage() }, t("feed.more"));
  let next = null;
  let loading = false;
  let done = false;
  async function loadPage(reset = false) {
    if (loading || (done && !reset)) return;
    loading = true;
    progress.hidden = false;
    try {
      if (reset) {
        next = null;
        done = false;
        clear(list);
      }
      const data = await api.lw("GET", "/feed", undefined, { query: { limit: 20, from: next } });
      for (const ev of data.chunk || []) list.append(postCard(ev, me));
      next = data.next_batch || null;
      done = !next;
      more.hidden = done;
      if (!list.children.length) list.append(h("p", { class: "muted empty" }, t("feed.nothing")));
    } catch (e) {
      out.show(e.message, "error");
    } finally {
      loading = false;
      progress.hidden = true;
    }
  }
  if ("IntersectionObserver" in window) {
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting) && next) loadPage();
    }).observe(sentinel);
  }
  // The server indexes a post for the feed a moment after it is sent: reload until it is there.
  async function showPosted(eventId) {
    for (let attempt = 0; attempt < 20; attempt++) {
      await loadPage(true);
      if (!eventId || list.querySelector(`[data-event-id="${CSS.escape(eventId)}"]`)) return;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  loadPage(true);
  main.append(composer(showPosted), out, list, progress, more, sentinel);
}
