// The dataset browser's logic (shards/browse.py writes data.js; index.html loads both).
// Everything runs in the page: filter -> sort -> one page of rows in the DOM (so 10,000 clips
// stay fast). The filters are translated into the equivalent DuckDB `--where` expression, and
// the checked (or else the matching) clips export as a keys file, one key per line.
"use strict";

(function () {
  const DATA = window.MCANIM_DATA;
  const COLS = DATA.columns;
  const INDEX = Object.fromEntries(COLS.map((c, i) => [c.name, i]));
  const KEY = INDEX.key;
  const TEXT_COLS = COLS.filter((c) => c.type === "string").map((c) => c.name);
  const $ = (id) => document.getElementById(id);

  const state = {
    filters: {}, // column -> {min, max} (numbers) or {text} (strings), raw input strings
    search: "",
    sort: null, // {col, dir: 1 | -1}
    page: 0,
    pageSize: 50,
    checked: new Set(),
    matching: [], // indices of DATA.rows after filter and sort
  };

  // ---- filtering and the equivalent --where ------------------------------------------------
  function number(text) {
    const t = (text || "").trim();
    if (t === "") return null;
    const n = Number(t);
    return Number.isFinite(n) ? n : NaN;
  }

  function activeFilters() {
    const out = [];
    for (const c of COLS) {
      const f = state.filters[c.name];
      if (!f) continue;
      if (c.type === "string") {
        const text = (f.text || "").trim();
        if (text) out.push({ col: c.name, kind: "text", text: text.toLowerCase() });
      } else {
        const min = number(f.min);
        const max = number(f.max);
        if (min !== null && !Number.isNaN(min)) out.push({ col: c.name, kind: "min", value: min });
        if (max !== null && !Number.isNaN(max)) out.push({ col: c.name, kind: "max", value: max });
      }
    }
    const search = state.search.trim().toLowerCase();
    if (search) out.push({ col: null, kind: "search", text: search });
    return out;
  }

  function contains(value, text) {
    return value !== null && String(value).toLowerCase().includes(text);
  }

  function keep(row, filters) {
    for (const f of filters) {
      if (f.kind === "search") {
        if (!TEXT_COLS.some((c) => contains(row[INDEX[c]], f.text))) return false;
        continue;
      }
      const v = row[INDEX[f.col]];
      if (f.kind === "text" && !contains(v, f.text)) return false;
      if (f.kind === "min" && (v === null || !(v >= f.value))) return false;
      if (f.kind === "max" && (v === null || !(v <= f.value))) return false;
    }
    return true;
  }

  function sqlString(text) {
    return "'" + text.replace(/'/g, "''") + "'";
  }

  function whereExpression(filters) {
    // DuckDB semantics equal to keep(): NULL fails every comparison and contains().
    const parts = filters.map((f) => {
      if (f.kind === "search") {
        const any = TEXT_COLS.map((c) => `contains(lower(${c}), ${sqlString(f.text)})`);
        return "(" + any.join(" or ") + ")";
      }
      if (f.kind === "text") return `contains(lower(${f.col}), ${sqlString(f.text)})`;
      return `${f.col} ${f.kind === "min" ? ">=" : "<="} ${String(f.value)}`;
    });
    return parts.join(" and ");
  }

  function shellQuote(text) {
    return "'" + text.replace(/'/g, "'\\''") + "'";
  }

  // ---- sorting ------------------------------------------------------------------------------
  function compare(a, b) {
    // Nulls last in both directions; numbers numerically, strings by code point.
    if (a === b) return 0;
    if (a === null) return 1;
    if (b === null) return -1;
    return a < b ? -1 : 1;
  }

  function apply() {
    const started = performance.now();
    const filters = activeFilters();
    const rows = DATA.rows;
    const matching = [];
    for (let i = 0; i < rows.length; i++) if (keep(rows[i], filters)) matching.push(i);
    if (state.sort) {
      const col = INDEX[state.sort.col];
      const dir = state.sort.dir;
      matching.sort((i, j) => {
        const a = rows[i][col];
        const b = rows[j][col];
        if (a === null || b === null) return compare(a, b) || i - j;
        return dir * compare(a, b) || i - j;
      });
    }
    state.matching = matching;
    const pages = Math.max(1, Math.ceil(matching.length / state.pageSize));
    state.page = Math.min(state.page, pages - 1);
    const where = whereExpression(filters);
    $("where").textContent = where || "(no filter: every clip)";
    const root = shellQuote(DATA.root);
    $("commands").innerHTML = "";
    if (where) {
      for (const cmd of [
        `python -m shards select ${root} --where ${shellQuote(where)} --to keys.txt`,
        `python -m shards show ${root} --where ${shellQuote(where)} --limit 8 --out show`,
      ]) {
        const code = document.createElement("code");
        code.textContent = cmd;
        $("commands").appendChild(code);
      }
    }
    $("row-count").textContent = `${matching.length} of ${rows.length} clips match`;
    render();
    window.MCANIM_APPLY_MS = performance.now() - started; // read by benchmarks/browse.py
  }

  // ---- rendering ----------------------------------------------------------------------------
  function cell(value, type) {
    const td = document.createElement("td");
    if (value === null) {
      td.className = "null";
      td.textContent = "–";
    } else if (type === "float") {
      td.className = "num";
      td.textContent = Math.abs(value) >= 1e4 || value === 0 ? String(value) : value.toPrecision(4);
      td.title = String(value);
    } else {
      td.className = type === "int" ? "num" : "";
      td.textContent = String(value);
    }
    return td;
  }

  function previewCell(key) {
    const td = document.createElement("td");
    const media = DATA.media[key];
    if (!media) {
      td.className = "nopreview";
      td.textContent = "no preview";
      td.title = `no preview made (the site previews the first ${DATA.previews.limit} clips ` +
        "of the table, from their shards); draw it with: " +
        `python -m shards show ${shellQuote(DATA.root)} --key ${key} --out show`;
      return td;
    }
    const img = document.createElement("img");
    img.className = "thumb";
    img.loading = "lazy";
    img.src = media.thumb;
    img.alt = key;
    img.title = "play the clip";
    img.addEventListener("click", () => play(key));
    td.appendChild(img);
    return td;
  }

  function videoCell(key) {
    const td = document.createElement("td");
    const media = DATA.media[key];
    if (!media) return td;
    for (const [label, path] of [["video", media.video], ["conditions", media.conditions],
      ["sheet", media.sheet]]) {
      if (!path) continue;
      const a = document.createElement("a");
      a.href = path;
      a.textContent = label;
      a.className = "media-link";
      if (label !== "sheet") {
        a.addEventListener("click", (e) => { e.preventDefault(); play(key, path); });
      } else {
        a.target = "_blank";
      }
      td.appendChild(a);
      td.appendChild(document.createTextNode(" "));
    }
    return td;
  }

  function render() {
    const tbody = document.querySelector("#clips tbody");
    const start = state.page * state.pageSize;
    const slice = state.matching.slice(start, start + state.pageSize);
    const fragment = document.createDocumentFragment();
    for (const i of slice) {
      const row = DATA.rows[i];
      const key = row[KEY];
      const tr = document.createElement("tr");
      tr.dataset.key = key;
      if (state.checked.has(key)) tr.className = "checked";
      const check = document.createElement("td");
      const box = document.createElement("input");
      box.type = "checkbox";
      box.className = "row-check";
      box.checked = state.checked.has(key);
      box.addEventListener("change", () => {
        if (box.checked) state.checked.add(key); else state.checked.delete(key);
        tr.className = box.checked ? "checked" : "";
        selectionInfo();
      });
      check.appendChild(box);
      tr.append(check, previewCell(key), videoCell(key));
      COLS.forEach((c, j) => tr.appendChild(cell(row[j], c.type)));
      fragment.appendChild(tr);
    }
    tbody.replaceChildren(fragment);
    const pages = Math.max(1, Math.ceil(state.matching.length / state.pageSize));
    $("page-info").textContent = `page ${state.page + 1} of ${pages}`;
    $("prev-page").disabled = $("first-page").disabled = state.page === 0;
    $("next-page").disabled = $("last-page").disabled = state.page >= pages - 1;
    for (const b of document.querySelectorAll("button.sort")) {
      const on = state.sort && state.sort.col === b.dataset.col;
      b.classList.toggle("active", Boolean(on));
      b.textContent = b.dataset.col + (on ? (state.sort.dir > 0 ? " ▲" : " ▼") : "");
    }
    selectionInfo();
  }

  function selectionInfo() {
    const n = state.checked.size;
    $("selection-info").textContent = n ? `${n} checked` : "none checked (export = matching clips)";
    $("export").textContent = n ? `export ${n} checked keys` : `export ${state.matching.length} matching keys`;
  }

  function play(key, path) {
    const media = DATA.media[key];
    const video = $("player-video");
    video.src = path || media.video;
    $("player-title").textContent = key;
    const links = $("player-links");
    links.replaceChildren();
    for (const [label, p] of [["video", media.video], ["conditions", media.conditions],
      ["contact sheet", media.sheet]]) {
      if (!p) continue;
      const a = document.createElement("a");
      a.href = p;
      a.textContent = label;
      a.target = "_blank";
      links.appendChild(a);
    }
    $("player").hidden = false;
    video.play().catch(() => {});
  }

  // ---- export -------------------------------------------------------------------------------
  function exportKeys() {
    const keys = state.checked.size
      ? DATA.rows.filter((r) => state.checked.has(r[KEY])).map((r) => r[KEY])
      : state.matching.map((i) => DATA.rows[i][KEY]);
    const text = keys.map((k) => k + "\n").join("");
    $("export-text").value = text;
    const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    const a = document.createElement("a");
    a.href = url;
    a.download = "keys.txt";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // ---- set-up -------------------------------------------------------------------------------
  function header() {
    const thead = document.querySelector("#clips thead");
    const names = document.createElement("tr");
    const filters = document.createElement("tr");
    filters.className = "filters";
    for (const label of ["", "preview", "media"]) {
      const th = document.createElement("th");
      th.textContent = label;
      names.appendChild(th);
      filters.appendChild(document.createElement("th"));
    }
    let timer = null;
    const changed = () => { clearTimeout(timer); timer = setTimeout(() => { state.page = 0; apply(); }, 120); };
    for (const c of COLS) {
      const th = document.createElement("th");
      th.dataset.col = c.name;
      const b = document.createElement("button");
      b.className = "sort";
      b.type = "button";
      b.dataset.col = c.name;
      b.title = `sort by ${c.name} (click again to reverse)`;
      b.addEventListener("click", () => {
        const same = state.sort && state.sort.col === c.name;
        state.sort = { col: c.name, dir: same ? -state.sort.dir : 1 };
        state.page = 0;
        apply();
      });
      th.appendChild(b);
      names.appendChild(th);
      const fth = document.createElement("th");
      const bounds = c.type === "string" ? ["text"] : ["min", "max"];
      for (const bound of bounds) {
        const input = document.createElement("input");
        input.type = "text";
        input.className = bound === "text" ? "text" : "range";
        input.placeholder = bound === "text" ? "contains" : bound;
        input.dataset.col = c.name;
        input.dataset.bound = bound;
        input.addEventListener("input", () => {
          state.filters[c.name] = { ...(state.filters[c.name] || {}), [bound]: input.value };
          changed();
        });
        fth.appendChild(input);
      }
      filters.appendChild(fth);
    }
    thead.append(names, filters);
    $("search").addEventListener("input", () => { state.search = $("search").value; changed(); });
  }

  function problems() {
    const tbody = document.querySelector("#problems tbody");
    if (!DATA.problems.length) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 6;
      td.textContent = "none: every video was clipped";
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
    for (const p of DATA.problems) {
      const tr = document.createElement("tr");
      for (const [value, cls] of [[p.status], [p.error_stage || "?"], [p.reason], [p.source],
        [p.video_id], [p.error, "msg"]]) {
        const td = document.createElement("td");
        td.textContent = value;
        if (cls) td.className = cls;
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
  }

  function init() {
    const made = DATA.previews.made;
    $("root-info").textContent = `${DATA.root} — ${DATA.rows.length} clips, ` +
      `${DATA.problems.length} failed/skipped videos; previews for ${made} clips ` +
      `(the first ${DATA.previews.limit} of the table); generated ${DATA.generated}`;
    $("summary").textContent = DATA.summary;
    for (const src of DATA.plots) {
      const img = document.createElement("img");
      img.src = src;
      img.alt = src;
      $("plots").appendChild(img);
    }
    header();
    problems();
    $("page-size").addEventListener("change", () => {
      state.pageSize = Number($("page-size").value);
      state.page = 0;
      render();
    });
    const pages = () => Math.max(1, Math.ceil(state.matching.length / state.pageSize));
    $("first-page").addEventListener("click", () => { state.page = 0; render(); });
    $("prev-page").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); render(); });
    $("next-page").addEventListener("click", () => { state.page = Math.min(pages() - 1, state.page + 1); render(); });
    $("last-page").addEventListener("click", () => { state.page = pages() - 1; render(); });
    $("clear-filters").addEventListener("click", () => {
      state.filters = {};
      state.search = "";
      for (const input of document.querySelectorAll(".filters input, #search")) input.value = "";
      state.page = 0;
      apply();
    });
    $("select-matching").addEventListener("click", () => {
      for (const i of state.matching) state.checked.add(DATA.rows[i][KEY]);
      render();
    });
    $("clear-selection").addEventListener("click", () => { state.checked.clear(); render(); });
    $("export").addEventListener("click", exportKeys);
    $("player-close").addEventListener("click", () => {
      $("player-video").pause();
      $("player").hidden = true;
    });
    apply();
    document.body.dataset.ready = "true";
    window.MCANIM_READY_MS = performance.now();
  }

  init();
})();
