// Lightbox demo chat: polls the sandbox chat as JSON and draws it with DOM nodes only (never innerHTML),
// so nothing a message says can become markup. Texts arrive as Telegram shows them: plain text + entities.
"use strict";

(function () {
  const chat = document.getElementById("chat");
  const form = document.getElementById("composer");
  const input = document.getElementById("text");
  const fileInput = document.getElementById("file");
  const toast = document.getElementById("toast");
  const keyboard = document.getElementById("keyboard");
  const shown = new Map(); // message id -> {version, el}
  const seenNotices = new Set();
  let rev = -1;
  let firstLoad = true;
  let keyboardKey = "";

  const URL_RE = /https?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)]/g;

  function safeHref(href) {
    try {
      const url = new URL(href, window.location.href);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function link(href, text) {
    const a = document.createElement("a");
    const safe = safeHref(href);
    if (safe) {
      a.href = safe;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
    }
    a.textContent = text;
    return a;
  }

  // Plain text, with bare http(s) addresses made into links (Telegram does the same).
  function appendText(parent, text) {
    if (!text) return;
    let last = 0;
    for (const match of text.matchAll(URL_RE)) {
      if (match.index > last) parent.appendChild(document.createTextNode(text.slice(last, match.index)));
      parent.appendChild(link(match[0], match[0]));
      last = match.index + match[0].length;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function elementFor(entity) {
    const tags = { bold: "b", italic: "i", underline: "u", strikethrough: "s", code: "code", pre: "pre",
                   blockquote: "blockquote", expandable_blockquote: "blockquote" };
    if (entity.type === "text_link") return link(entity.url || "", "");
    if (entity.type === "spoiler") {
      const span = document.createElement("span");
      span.className = "spoiler";
      span.title = "Tap to show";
      span.addEventListener("click", () => span.classList.add("revealed"));
      return span;
    }
    return document.createElement(tags[entity.type] || "span");
  }

  // Entities are in UTF-16 units, which is what JavaScript strings index by.
  function build(text, entities, start, end, parent) {
    let pos = start;
    let i = 0;
    while (i < entities.length) {
      const e = entities[i];
      const eEnd = e.offset + e.length;
      if (e.offset < pos || eEnd > end) { i++; continue; }
      appendText(parent, text.slice(pos, e.offset));
      const inner = [];
      let j = i + 1;
      while (j < entities.length && entities[j].offset < eEnd) {
        if (entities[j].offset + entities[j].length <= eEnd) inner.push(entities[j]);
        j++;
      }
      const el = elementFor(e);
      build(text, inner, e.offset, eEnd, el);
      parent.appendChild(el);
      pos = eEnd;
      i = j;
    }
    appendText(parent, text.slice(pos, end));
  }

  function richText(text, entities, className) {
    const div = document.createElement("div");
    div.className = className;
    const sorted = (entities || []).slice().sort((a, b) => a.offset - b.offset || b.length - a.length);
    build(text, sorted, 0, text.length, div);
    return div;
  }

  function mediaElement(media) {
    const box = document.createElement("div");
    box.className = "media";
    if (media.kind === "photo" || media.kind === "image_document") {
      const img = document.createElement("img");
      img.src = media.url;
      img.alt = media.kind === "photo" ? "Picture from the bot" : media.name || "Picture";
      img.loading = "lazy";
      img.addEventListener("click", () => window.open(media.url, "_blank", "noopener"));
      img.addEventListener("load", () => scrollIfNear(true));
      box.appendChild(img);
    } else if (media.kind === "animation") {
      if ((media.mime || "").startsWith("video/")) {
        const video = document.createElement("video");
        video.src = media.url;
        video.autoplay = true;
        video.loop = true;
        video.muted = true;
        video.playsInline = true;
        video.controls = true;
        box.appendChild(video);
      } else {
        const img = document.createElement("img");
        img.src = media.url;
        img.alt = "Moving picture from the bot";
        box.appendChild(img);
      }
    }
    if (media.kind === "document" || media.kind === "image_document") {
      const a = document.createElement("a");
      a.href = media.url;
      a.className = "file";
      a.download = media.name || "file";
      a.textContent = "📄 " + (media.name || "file") + " (" + Math.max(1, Math.round(media.size / 1024)) + " KB)";
      box.appendChild(a);
    }
    return box;
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      showToast(problem.error || "That did not work. Please try again.");
    }
    return response;
  }

  function buttonsElement(message) {
    const box = document.createElement("div");
    box.className = "keyboard-inline";
    for (const row of message.buttons) {
      const rowEl = document.createElement("div");
      rowEl.className = "row";
      for (const button of row) {
        let el;
        if (button.callback_data !== undefined) {
          el = document.createElement("button");
          el.type = "button";
          el.textContent = button.text;
          el.dataset.callback = button.callback_data;
          el.addEventListener("click", () => {
            el.classList.add("pressed");
            post("/api/tap", { message_id: message.id, data: button.callback_data })
              .finally(() => setTimeout(() => el.classList.remove("pressed"), 400));
          });
        } else if (button.url) {
          el = link(button.url, button.text + " ↗");
          el.className = "button-link";
        } else {
          el = document.createElement("span");
          el.textContent = button.text;
        }
        rowEl.appendChild(el);
      }
      box.appendChild(rowEl);
    }
    return box;
  }

  function messageElement(message) {
    const el = document.createElement("article");
    el.className = "message " + (message.from_bot ? "bot" : "me");
    el.dataset.id = String(message.id);
    el.dataset.version = String(message.version);
    if (message.media) el.appendChild(mediaElement(message.media));
    if (message.text !== null && message.text !== undefined) el.appendChild(richText(message.text, message.entities, "text"));
    if (message.caption) el.appendChild(richText(message.caption, message.caption_entities, "text caption"));
    if (message.buttons && message.buttons.length) el.appendChild(buttonsElement(message));
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.textContent = new Date(message.date * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      + (message.edited ? " · edited" : "");
    el.appendChild(meta);
    return el;
  }

  function nearBottom() {
    return window.innerHeight + window.scrollY >= document.body.scrollHeight - 160;
  }

  function scrollIfNear(force) {
    if (force || nearBottom()) window.scrollTo(0, document.body.scrollHeight);
  }

  function showToast(text) {
    toast.textContent = text;
    toast.hidden = false;
    clearTimeout(showToast.timer);
    showToast.timer = setTimeout(() => { toast.hidden = true; }, 4000);
  }

  function drawKeyboard(rows) {
    const key = JSON.stringify(rows);
    if (key === keyboardKey) return;
    keyboardKey = key;
    keyboard.replaceChildren();
    keyboard.hidden = rows.length === 0;
    for (const row of rows) {
      const rowEl = document.createElement("div");
      rowEl.className = "row";
      for (const text of row) {
        const b = document.createElement("button");
        b.type = "button";
        b.textContent = text;
        b.addEventListener("click", () => post("/api/say", { text: text }));
        rowEl.appendChild(b);
      }
      keyboard.appendChild(rowEl);
    }
  }

  function apply(snapshot) {
    const wasNear = nearBottom();
    let added = false;
    const present = new Set();
    for (const message of snapshot.messages) {
      present.add(message.id);
      const known = shown.get(message.id);
      if (!known) {
        const el = messageElement(message);
        chat.appendChild(el);
        shown.set(message.id, { version: message.version, el: el });
        added = true;
      } else if (known.version !== message.version) {
        const el = messageElement(message);
        known.el.replaceWith(el); // an edit: the same message changes in place
        shown.set(message.id, { version: message.version, el: el });
      }
    }
    for (const [id, known] of shown) {
      if (!present.has(id)) {
        known.el.remove();
        shown.delete(id);
      }
    }
    for (const notice of snapshot.notices) {
      if (seenNotices.has(notice.id)) continue;
      seenNotices.add(notice.id);
      if (!firstLoad) showToast(notice.text);
    }
    drawKeyboard(snapshot.keyboard || []);
    if (added && (wasNear || firstLoad)) scrollIfNear(true);
    firstLoad = false;
    rev = snapshot.rev;
  }

  async function poll() {
    for (;;) {
      try {
        const response = await fetch("/api/messages?since=" + rev, { cache: "no-store" });
        if (!response.ok) throw new Error(String(response.status));
        apply(await response.json());
      } catch (e) {
        await new Promise((resolve) => setTimeout(resolve, 1500));
      }
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    post("/api/say", { text: text });
  });

  fileInput.addEventListener("change", async () => {
    const file = fileInput.files && fileInput.files[0];
    if (!file) return;
    const data = new FormData();
    data.append("file", file, file.name);
    showToast("Sending " + file.name + " …");
    const response = await fetch("/api/upload", { method: "POST", headers: { "X-Lightbox-Chat": "1" }, body: data });
    if (!response.ok) {
      const problem = await response.json().catch(() => ({}));
      showToast(problem.error || "The file was not sent.");
    }
    fileInput.value = "";
  });

  input.focus();
  poll();
})();
