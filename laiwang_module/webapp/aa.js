// AA: a split with a live preview of every share (money.js has the server's rule), the bills
// of one's rooms with who paid, pay / close / remind, and balances per currency (list + SVG).
import * as api from "./api.js";
import { h, s, clear, notice, busy, localpart } from "./dom.js";
import { t } from "./i18n.js";
import { formatAmount, parseAmount, preview, isCurrency, exponent } from "./money.js";

const COMMON_CURRENCIES = ["CNY", "HKD", "TWD", "JPY", "KRW", "USD", "EUR", "GBP", "KWD"];

// The rooms a bill can live in: the contact rooms and the clusters one is in.
async function billRooms() {
  const [c, cl] = await Promise.all([api.lw("GET", "/contacts"), api.lw("GET", "/clusters")]);
  return [
    ...cl.clusters.map((x) => ({ room_id: x.room_id, name: t("aa.roomCluster", { topic: x.topic }) })),
    ...c.contacts.map((x) => ({ room_id: x.room_id, name: t("aa.roomChat", { user: localpart(x.user_id) }) })),
  ];
}

function createSection(rooms, onCreated) {
  const me = api.loadSession().user_id;
  const out = notice();
  const room = h("select", { id: "aa-room", "aria-label": t("aa.room") }, rooms.map((r) => h("option", { value: r.room_id }, r.name)));
  const title = h("input", { id: "aa-title", required: true, maxlength: 200, "aria-label": t("aa.title") });
  const currency = h("select", { id: "aa-currency", "aria-label": t("aa.currency") }, COMMON_CURRENCIES.filter(isCurrency).map((c) => h("option", { value: c }, c)));
  const total = h("input", { id: "aa-total", inputmode: "decimal", required: true, "aria-label": t("aa.total"), placeholder: "100.00" });
  const splitName = "aa-split";
  const splitChoices = ["equal", "exact", "weights"].map((v) =>
    h("div", { class: "radio" }, h("input", { type: "radio", name: splitName, id: `aa-split-${v}`, value: v, checked: v === "equal" }), h("label", { for: `aa-split-${v}` }, t(`aa.split.${v}`))),
  );
  const people = h("div", { class: "participants", id: "aa-participants" });
  const previewTable = h("table", { class: "preview", id: "aa-preview", "aria-live": "polite" });
  const remainderLine = h("p", { id: "aa-remainder", class: "muted", "aria-live": "polite" });
  const submit = h("button", { type: "submit" }, t("aa.ask"));
  let members = [];
  const inputs = {};

  const split = () => (people.closest("form") || document).querySelector(`input[name=${splitName}]:checked`)?.value || "equal";
  function participants() {
    return members.filter((m) => inputs[m] && inputs[m].check.checked);
  }
  function update() {
    const sp = split();
    for (const m of members) {
      inputs[m].amount.hidden = sp !== "exact";
      inputs[m].weight.hidden = sp !== "weights";
    }
    const cur = currency.value;
    const totalMinor = parseAmount(total.value, cur);
    const parts = participants();
    const p = preview({
      split: sp,
      total: totalMinor ?? 0,
      currency: cur,
      participants: parts,
      amounts: Object.fromEntries(parts.map((m) => [m, inputs[m].amount.value])),
      weights: Object.fromEntries(parts.map((m) => [m, inputs[m].weight.value || "1"])),
    });
    clear(
      previewTable,
      h("caption", {}, t("aa.preview")),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("aa.who")), h("th", { scope: "col" }, t("aa.share")))),
      h(
        "tbody",
        {},
        parts.map((m) => h("tr", {}, h("td", {}, m === me ? t("aa.meName", { user: localpart(m) }) : localpart(m)), h("td", { class: "num" }, p.shares[m] == null ? "—" : formatAmount(p.shares[m], cur)))),
      ),
    );
    const words = p.problems.map((k) => t(k)).join(" ");
    if (sp === "exact") remainderLine.textContent = `${t("aa.unassigned", { amount: formatAmount(p.remainder || 0, cur) })} ${words}`;
    else remainderLine.textContent = `${t("aa.remainder", { n: p.remainder || 0, unit: formatAmount(1, cur) })} ${words}`;
    return { p, totalMinor, parts, sp, cur };
  }
  async function loadMembers() {
    clear(people);
    members = [];
    if (!room.value) return update();
    const data = await api.cs("GET", `/rooms/${api.enc(room.value)}/joined_members`);
    members = Object.keys(data.joined || {}).sort((a, b) => (a === me ? -1 : b === me ? 1 : a.localeCompare(b)));
    for (const m of members) {
      const id = `aa-p-${localpart(m)}`;
      const name = localpart(m);
      inputs[m] = {
        check: h("input", { type: "checkbox", id, checked: true, onchange: update }),
        amount: h("input", { inputmode: "decimal", class: "small", "aria-label": t("aa.amountFor", { user: name }), oninput: update, hidden: true }),
        weight: h("input", { inputmode: "numeric", class: "small", value: "1", "aria-label": t("aa.weightFor", { user: name }), oninput: update, hidden: true }),
      };
      people.append(h("div", { class: "check" }, inputs[m].check, h("label", { for: id }, m === me ? t("aa.meName", { user: name }) : name), inputs[m].amount, inputs[m].weight));
    }
    update();
  }
  room.onchange = () => loadMembers().catch((e) => out.show(e.message, "error"));
  currency.onchange = update;
  total.oninput = update;
  const form = h(
    "form",
    {
      id: "aa-form",
      onchange: update,
      onsubmit: (e) => {
        e.preventDefault();
        busy(submit, out, async () => {
          const { p, totalMinor, parts, sp, cur } = update();
          if (totalMinor === null || totalMinor <= 0) throw new Error(t("aa.badTotal"));
          if (p.problems.length) throw new Error(p.problems.map((k) => t(k)).join(" "));
          const body = { room_id: room.value, title: title.value.trim(), currency: cur, total: totalMinor, split: sp, participants: parts };
          if (sp === "exact") body.amounts = p.shares;
          if (sp === "weights") body.weights = Object.fromEntries(parts.map((m) => [m, Number(inputs[m].weight.value || "1")]));
          await api.lw("POST", "/aa/requests", body);
          title.value = "";
          total.value = "";
          update();
          onCreated();
        }, t("aa.created"));
      },
    },
    h("label", { for: "aa-room" }, t("aa.room")),
    room,
    h("label", { for: "aa-title" }, t("aa.title")),
    title,
    h("div", { class: "row" }, h("div", {}, h("label", { for: "aa-currency" }, t("aa.currency")), currency), h("div", { class: "grow" }, h("label", { for: "aa-total" }, t("aa.total")), total)),
    h("fieldset", { class: "checks" }, h("legend", {}, t("aa.splitKind")), splitChoices),
    h("fieldset", { class: "checks" }, h("legend", {}, t("aa.participants")), people),
    previewTable,
    remainderLine,
    submit,
    out,
  );
  if (!rooms.length) return h("section", { class: "card" }, h("h2", {}, t("aa.newTitle")), h("p", { class: "muted" }, t("aa.noRooms")));
  loadMembers().catch((e) => out.show(e.message, "error"));
  return h("section", { class: "card", "aria-labelledby": "h-aa-new" }, h("h2", { id: "h-aa-new" }, t("aa.newTitle")), form);
}

function billCard(roomName, roomId, eventId, bill, reload) {
  const me = api.loadSession().user_id;
  const out = notice();
  const path = `/aa/requests/${api.enc(roomId)}/${api.enc(eventId)}`;
  const isPayee = bill.payee === me;
  const open = bill.state === "open";
  const rows = Object.entries(bill.shares).map(([user, share]) => {
    const actions = [];
    if (open && !share.paid && user === me && !isPayee) {
      const pay = h("button", { type: "button", "aria-label": t("aa.payFor", { title: bill.title }) }, t("aa.pay"));
      pay.onclick = () => busy(pay, out, async () => { await api.lw("POST", `${path}/pay`, { method: "provider" }); reload(); });
      actions.push(pay);
    }
    if (open && !share.paid && isPayee && user !== me) {
      const cash = h("button", { type: "button", class: "secondary", "aria-label": t("aa.cashFrom", { user: localpart(user), title: bill.title }) }, t("aa.cash"));
      cash.onclick = () => busy(cash, out, async () => { await api.lw("POST", `${path}/pay`, { method: "cash", payer: user }); reload(); });
      actions.push(cash);
    }
    return h(
      "tr",
      {},
      h("td", {}, user === me ? t("aa.meName", { user: localpart(user) }) : localpart(user)),
      h("td", { class: "num" }, formatAmount(share.amount, bill.currency)),
      h("td", {}, share.paid ? h("span", { class: "paid" }, "✓ ", t("aa.paid")) : h("span", { class: "unpaid" }, t("aa.unpaid"))),
      h("td", {}, actions),
    );
  });
  const payeeActions = [];
  if (isPayee && open) {
    const close = h("button", { type: "button", class: "secondary", "aria-label": t("aa.closeBill", { title: bill.title }) }, t("aa.close"));
    close.onclick = () => busy(close, out, async () => { await api.lw("POST", `${path}/close`, {}); reload(); });
    const remind = h("button", { type: "button", class: "secondary", "aria-label": t("aa.remindBill", { title: bill.title }) }, t("aa.remind"));
    remind.onclick = () => busy(remind, out, async () => { await api.lw("POST", `${path}/remind`, {}); }, t("aa.reminded"));
    payeeActions.push(close, remind);
  }
  const headingId = `bill-${eventId.replace(/\W/g, "")}`;
  return h(
    "article",
    { class: "card bill", "aria-labelledby": headingId, "data-state": bill.state },
    h("h3", { id: headingId }, bill.title, " · ", formatAmount(bill.total, bill.currency)),
    h("p", { class: "muted" }, roomName, " · ", t("aa.payee", { user: localpart(bill.payee) }), " · ", h("span", { class: `state ${bill.state}` }, t(`aa.state.${bill.state}`))),
    h("div", { class: "table-scroll" }, h("table", { class: "shares" }, h("caption", { class: "visually-hidden" }, t("aa.sharesOf", { title: bill.title })), h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("aa.who")), h("th", { scope: "col" }, t("aa.share")), h("th", { scope: "col" }, t("aa.status")), h("th", { scope: "col" }, t("aa.actions")))), h("tbody", {}, rows))),
    h("div", { class: "actions" }, payeeActions),
    out,
  );
}

async function loadBills(rooms, box, progress) {
  progress.hidden = false;
  progress.max = rooms.length || 1;
  progress.value = 0;
  const found = [];
  await Promise.all(
    rooms.map(async (r) => {
      try {
        const data = await api.cs("GET", `/rooms/${api.enc(r.room_id)}/messages`, undefined, { query: { dir: "b", limit: 100 } });
        for (const ev of data.chunk || []) {
          if (ev.type === "m.room.message" && ev.content && ev.content.msgtype === "org.laiwang.aa.request") found.push({ room: r, ev });
        }
      } finally {
        progress.value += 1;
      }
    }),
  );
  found.sort((a, b) => b.ev.origin_server_ts - a.ev.origin_server_ts);
  const cards = await Promise.all(
    found.map(async ({ room, ev }) => {
      const bill = await api.lw("GET", `/aa/requests/${api.enc(room.room_id)}/${api.enc(ev.event_id)}`).catch(() => null);
      return bill && billCard(room.name, room.room_id, ev.event_id, bill, () => loadBills(rooms, box, progress));
    }),
  );
  clear(box, cards.filter(Boolean).length ? cards.filter(Boolean) : h("p", { class: "muted" }, t("aa.noBills")));
  progress.hidden = true;
}

// Horizontal bars around a zero line: owed to me to the right, owed by me to the left.
export function balancesChart(entries, currency) {
  const W = 320;
  const rowH = 28;
  const mid = W / 2;
  const max = Math.max(1, ...entries.map((e) => Math.abs(e.net)));
  const height = entries.length * rowH + 10;
  const svg = s(
    "svg",
    { viewBox: `0 0 ${W} ${height}`, width: "100%", role: "img", "aria-label": t("aa.chartOf", { currency }), class: "chart" },
    s("title", {}, t("aa.chartOf", { currency })),
    s("line", { x1: mid, x2: mid, y1: 0, y2: height, class: "axis" }),
  );
  entries.forEach((e, i) => {
    const len = (Math.abs(e.net) / max) * (mid - 10);
    const y = 5 + i * rowH;
    svg.append(
      s("rect", { x: e.net >= 0 ? mid : mid - len, y, width: Math.max(len, 1), height: rowH - 10, class: e.net >= 0 ? "owed" : "owing" }),
      s("text", { x: e.net >= 0 ? mid - 4 : mid + 4, y: y + 13, "text-anchor": e.net >= 0 ? "end" : "start" }, localpart(e.user_id).slice(0, 16)),
    );
  });
  return svg;
}

function balancesSection() {
  const out = notice();
  const box = h("div", { id: "balances" }, h("p", { class: "muted", role: "status" }, t("app.loading")));
  api
    .lw("GET", "/aa/balances")
    .then((data) => {
      const byCurrency = new Map();
      for (const b of data.balances) {
        if (!byCurrency.has(b.currency)) byCurrency.set(b.currency, []);
        byCurrency.get(b.currency).push(b);
      }
      if (!byCurrency.size) return clear(box, h("p", { class: "muted" }, t("aa.noBalances")));
      clear(
        box,
        [...byCurrency.entries()].map(([cur, list]) =>
          h(
            "div",
            { class: "currency" },
            h("h3", {}, cur),
            h("ul", { class: "list" }, list.map((b) => h("li", {}, h("span", { class: "grow" }, localpart(b.user_id)), h("span", { class: b.net >= 0 ? "owed" : "owing" }, b.net >= 0 ? t("aa.owesYou", { amount: formatAmount(b.net, cur) }) : t("aa.youOwe", { amount: formatAmount(-b.net, cur) }))))),
            isCurrency(cur) && exponent(cur) >= 0 ? balancesChart(list, cur) : null,
          ),
        ),
      );
    })
    .catch((e) => out.show(e.message, "error"));
  return h("section", { class: "card", "aria-labelledby": "h-balances" }, h("h2", { id: "h-balances" }, t("aa.balances")), box, out);
}

export function aaPage(main) {
  const out = notice();
  const bills = h("div", { id: "bills" });
  const progress = h("progress", { id: "bills-progress", hidden: true, "aria-label": t("aa.loadingBills") });
  const billsSection = h("section", { "aria-labelledby": "h-bills" }, h("h2", { id: "h-bills" }, t("aa.bills")), progress, bills);
  const balancesBox = h("div");
  const reloadAll = (rooms) => {
    loadBills(rooms, bills, progress).catch((e) => out.show(e.message, "error"));
    clear(balancesBox, balancesSection());
  };
  main.append(out);
  billRooms()
    .then((rooms) => {
      main.append(createSection(rooms, () => reloadAll(rooms)), balancesBox, billsSection);
      reloadAll(rooms);
    })
    .catch((e) => out.show(e.message, "error"));
}
