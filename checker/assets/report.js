(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  var active = null;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    if (attrs) { for (var k in attrs) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "cls") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    } }
    (children || []).forEach(function (c) {
      if (c === null || c === undefined) return;
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }
  function show(v) {
    if (v === null || v === undefined) return "—";
    if (Array.isArray(v)) return v.length ? v.map(show).join(" ") : "—";
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }
  function base(path) { return String(path).split("/").pop(); }

  function snippet(file, line, bad, title) {
    var lines = DATA.sources[file];
    var box = el("div");
    box.appendChild(el("h3", {text: title + " " + base(file) + ":" + line}));
    if (!lines) return box;
    var pre = el("pre", {cls: "snippet"});
    var lo = Math.max(1, line - 3), hi = Math.min(lines.length, line + 3);
    for (var n = lo; n <= hi; n++) {
      var row = el("span", {cls: n === line ? ("here" + (bad ? " bad" : "")) : ""},
                   [el("span", {cls: "no", text: String(n)}), lines[n - 1] || " "]);
      pre.appendChild(row);
    }
    box.appendChild(pre);
    return box;
  }

  function cpuTable(cpus, prevCpus) {
    var prevById = {};
    (prevCpus || []).forEach(function (c) { prevById[c.id] = c; });
    var keys = [];
    cpus.forEach(function (c) { Object.keys(c).forEach(function (k) {
      if (k !== "id" && k !== "registers" && keys.indexOf(k) < 0) keys.push(k);
    }); });
    var table = el("table", {cls: "cpus" + (cpus.length === 1 ? " one" : "")});
    function cell(c, k) {
      var p = prevById[c.id];
      var changed = p && show(p[k]) !== show(c[k]);
      return el("td", {cls: changed ? "changed" : "", text: show(c[k])});
    }
    if (cpus.length === 1) {  // one CPU: fields in two column pairs
      var c0 = cpus[0], half = Math.ceil(keys.length / 2);
      table.appendChild(el("tr", null, [el("th", {colspan: "4", cls: "cpu-name",
                                                 text: "cpu" + c0.id})]));
      for (var i = 0; i < half; i++) {
        var tr = el("tr", null, [el("th", {text: keys[i]}), cell(c0, keys[i])]);
        if (i + half < keys.length) {
          tr.appendChild(el("th", {text: keys[i + half]}));
          tr.appendChild(cell(c0, keys[i + half]));
        }
        table.appendChild(tr);
      }
    } else {
      var head = el("tr", null, [el("th")]);
      cpus.forEach(function (c) { head.appendChild(el("th", {cls: "cpu-name", text: "cpu" + c.id})); });
      table.appendChild(head);
      keys.forEach(function (k) {
        var row = el("tr", null, [el("th", {text: k})]);
        cpus.forEach(function (c) { row.appendChild(cell(c, k)); });
        table.appendChild(row);
      });
    }
    var box = el("div", null, [table]);
    cpus.forEach(function (c) {
      if (!c.registers) return;
      var p = prevById[c.id], regs = el("div", {cls: "regs"});
      Object.keys(c.registers).forEach(function (r) {
        var v = show(c.registers[r]);
        var changed = p && p.registers && show(p.registers[r]) !== v;
        var zero = /^0x0+$|^0$/.test(v);
        regs.appendChild(el("span", {cls: changed ? "changed" : (zero ? "zero" : "")},
                            [r + " = " + v]));
      });
      box.appendChild(el("h3", {text: "cpu" + c.id + " registers"}));
      box.appendChild(regs);
    });
    return box;
  }

  function frameKey(f) { return [f.cpu, f.vector, f.source, f.lo, f.stack].join("|"); }

  function stackCard(stack, prevStack, cpus) {
    var bad = (stack.frames || []).some(function (f) { return f.clobbered || f.on_guest_stack; });
    var card = el("div", {cls: "stack" + (bad ? " bad" : ""), "data-stack": stack.name});
    var head = el("div", {cls: "stack-head"}, [el("b", {text: stack.name})]);
    if (stack.owner) head.appendChild(el("span", {cls: "muted", text: stack.owner}));
    if (stack.size) head.appendChild(el("span", {cls: "muted", text: stack.size + " bytes"}));
    (stack.rsp_of || []).forEach(function (id) {
      var rsp = "";
      (cpus || []).forEach(function (c) { if (c.id === id && c.rsp) rsp = " " + c.rsp; });
      head.appendChild(el("span", {cls: "chip rsp", text: "rsp of cpu" + id + rsp}));
    });
    card.appendChild(head);
    var before = {};  // frames of the previous step, counted by identity
    ((prevStack && prevStack.frames) || []).forEach(function (f) {
      before[frameKey(f)] = (before[frameKey(f)] || 0) + 1;
    });
    (stack.frames || []).forEach(function (f) {
      var cls = "frame" + (f.clobbered ? " clobbered" : "") + (f.on_guest_stack ? " on-guest" : "");
      var isNew = prevStack !== undefined && !before[frameKey(f)];
      if (!isNew && prevStack !== undefined) before[frameKey(f)] -= 1;
      if (isNew) cls += " new";
      var row = el("div", {cls: cls}, [el("span", {cls: "fname", text: f.name || ("vector " + f.vector)})]);
      var bits = [];
      if (f.source !== undefined) bits.push(String(f.source));
      if (f.cpu !== undefined) bits.push("cpu" + f.cpu);
      if (f.from_cpl !== undefined) bits.push("from CPL" + f.from_cpl);
      row.appendChild(el("span", {text: bits.join(" · ")}));
      if (f.lo !== undefined) row.appendChild(el("span", {cls: "range", text: f.lo + " – " + f.hi}));
      if (f.clobbered) row.appendChild(el("span", {cls: "badge clobbered", text: "CLOBBERED"}));
      if (f.on_guest_stack) row.appendChild(el("span", {cls: "badge on-guest", text: "ON GUEST STACK"}));
      if (isNew) row.appendChild(el("span", {cls: "badge new", text: "new"}));
      card.appendChild(row);
    });
    if (stack.words && stack.words.length) {
      var prevWords = {};
      ((prevStack && prevStack.words) || []).forEach(function (w) { prevWords[w.address] = w.value; });
      var damaged = (stack.frames || []).filter(function (f) { return f.clobbered || f.on_guest_stack; });
      var table = el("table", {cls: "words"});
      table.appendChild(el("tr", null, [el("th", {text: "offset"}), el("th", {text: "address"}),
                                        el("th", {text: "value"})]));
      stack.words.slice().sort(function (a, b) { return b.offset - a.offset; }).forEach(function (w) {
        var changed = prevStack !== undefined && prevWords[w.address] !== w.value;
        var inBad = damaged.some(function (f) {
          try { return BigInt(w.address) >= BigInt(f.lo) && BigInt(w.address) < BigInt(f.hi); }
          catch (e) { return false; }
        });
        table.appendChild(el("tr", {cls: (changed ? "changed " : "") + (inBad ? "in-bad" : "")}, [
          el("td", {text: "+0x" + Number(w.offset).toString(16)}),
          el("td", {cls: "addr", text: w.address}), el("td", {text: show(w.value)})]));
      });
      card.appendChild(table);
    }
    return card;
  }

  function kvTable(obj, prev) {
    var table = el("table", {cls: "kv"});
    Object.keys(obj).forEach(function (k) {
      var changed = prev && show(prev[k]) !== show(obj[k]);
      table.appendChild(el("tr", null, [el("th", {text: k}),
        el("td", {cls: changed ? "changed" : "", text: show(obj[k])})]));
    });
    return table;
  }

  function render(section, index) {
    var trace = DATA.traces[section.dataset.trace];
    var step = trace.steps[index], prev = index > 0 ? trace.steps[index - 1] : null;
    var panel = section.querySelector(".detail");
    panel.textContent = "";
    var edge = step.edge;
    var title = el("div", {cls: "step-title"});
    if (edge) {
      var lane = edge.cpu !== undefined ? "cpu" + edge.cpu : (edge.actor || "system");
      title.appendChild(el("span", {cls: "lane", text: "step " + index + " · " + lane}));
      title.appendChild(document.createTextNode(edge.label || "?"));
    } else {
      title.appendChild(el("span", {cls: "lane", text: "step 0"}));
      title.appendChild(document.createTextNode("initial state"));
    }
    panel.appendChild(title);
    if (edge && edge.damage) panel.appendChild(el("div", {cls: "damage-box", text: "⚠ " + edge.damage}));
    if (index === trace.steps.length - 1 && trace.loop_start !== null &&
        trace.loop_start !== undefined) {
      panel.appendChild(el("p", {cls: "muted", text: trace.loop_start < index ?
        "The loop's first state (step " + trace.loop_start + ") again: the steps after it " +
        "repeat forever (next: back to step " + trace.loop_start + ")." :
        "No action is enabled here: this state repeats forever (it stutters)."}));
    } else if (index === trace.steps.length - 1) {
      panel.appendChild(el("p", {cls: "muted", text: trace.what === "witness" ?
        "The property's witness state." : "The state in which the property fails."}));
    }
    if (step.at && step.at.file) {
      panel.appendChild(snippet(step.at.file, step.at.line, !!(edge && edge.damage),
                                step.at.event ? "arrives at" : "executes"));
    }
    var view = step.inspect, before = prev ? prev.inspect : null;
    if (view) {
      if (view.stacks) {
        panel.appendChild(el("h3", {text: "Stacks after the step"}));
        if (!view.stacks.length) {
          panel.appendChild(el("p", {cls: "muted", text: "nothing on any stack"}));
        }
        var prevStacks = {};
        ((before && before.stacks) || []).forEach(function (s) { prevStacks[s.name] = s; });
        view.stacks.forEach(function (s) {
          var old = before ? (prevStacks[s.name] || {frames: [], words: []}) : undefined;
          panel.appendChild(stackCard(s, old, view.cpus));
        });
      }
      if (view.cpus) {
        panel.appendChild(el("h3", {text: "CPUs after the step"}));
        panel.appendChild(cpuTable(view.cpus, before && before.cpus));
      }
      if (view.variables && Object.keys(view.variables).length) {
        panel.appendChild(el("h3", {text: "Variables"}));
        panel.appendChild(kvTable(view.variables, before && before.variables));
      }
      if (view.incidents && view.incidents.length) {
        panel.appendChild(el("h3", {text: "Incidents"}));
        panel.appendChild(el("p", null, view.incidents.map(function (i) {
          return el("span", {cls: "chip miss", text: i}); })));
      }
      Object.keys(view).forEach(function (k) {
        if (["cpus", "stacks", "variables", "incidents", "witness"].indexOf(k) >= 0) return;
        panel.appendChild(el("h3", {text: k}));
        var v = view[k];
        if (v && typeof v === "object" && !Array.isArray(v)) panel.appendChild(kvTable(v, before && before[k]));
        else panel.appendChild(el("p", {cls: "mono", text: show(v)}));
      });
      var det = el("details", null, [el("summary", {text: "State summary (describe_state)"})]);
      det.appendChild(kvTable(step.state, prev && prev.state));
      panel.appendChild(det);
    } else {
      panel.appendChild(el("h3", {text: "State after the step"}));
      panel.appendChild(kvTable(step.state, prev && prev.state));
    }
    if (edge) {
      var extra = {};
      Object.keys(edge).forEach(function (k) {
        if (["label", "damage", "step"].indexOf(k) < 0) extra[k] = edge[k];
      });
      var d2 = el("details", null, [el("summary", {text: "Action attributes"})]);
      d2.appendChild(kvTable(extra, null));
      panel.appendChild(d2);
    }
  }

  function select(section, index, scroll) {
    var count = Number(section.dataset.steps);
    index = Math.max(0, Math.min(count, index));
    section.dataset.selected = String(index);
    section.querySelectorAll(".step").forEach(function (row) {
      var on = Number(row.dataset.step) === index;
      row.classList.toggle("selected", on);
      row.setAttribute("aria-selected", on ? "true" : "false");
      if (on && scroll) {
        var box = section.querySelector(".timeline");
        var rb = row.getBoundingClientRect(), bb = box.getBoundingClientRect();
        var head = 30;  // the sticky lane header
        if (rb.top < bb.top + head) box.scrollTop -= (bb.top + head - rb.top);
        else if (rb.bottom > bb.bottom) box.scrollTop += (rb.bottom - bb.bottom);
      }
    });
    section.querySelectorAll(".graph-box g.node").forEach(function (g) {
      var t = g.querySelector("title");
      g.classList.toggle("selected", !!t && t.textContent.trim() === "s" + index);
    });
    var pos = section.querySelector(".keys .pos");
    if (pos) pos.textContent = String(index);
    render(section, index);
  }

  function activate(section) {
    if (active === section) return;
    if (active) active.classList.remove("active");
    active = section;
    if (section) section.classList.add("active");
  }

  var sections = Array.prototype.slice.call(document.querySelectorAll("section.trace"));
  sections.forEach(function (section) {
    section.querySelectorAll(".step").forEach(function (row) {
      row.addEventListener("click", function () {
        activate(section); select(section, Number(row.dataset.step), false);
      });
    });
    section.querySelectorAll(".graph-box g.node").forEach(function (g) {
      g.addEventListener("click", function () {
        var t = g.querySelector("title"), m = t && /^s(\d+)$/.exec(t.textContent.trim());
        if (m) { activate(section); select(section, Number(m[1]), true); }
      });
    });
    section.addEventListener("click", function () { activate(section); });
    select(section, Number(section.dataset.steps), true);
  });
  if (sections.length) activate(sections[0]);

  function fromHash() {
    var id = decodeURIComponent(location.hash.slice(1));
    var target = id && document.getElementById(id);
    if (target && target.classList.contains("trace")) activate(target);
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();

  document.addEventListener("keydown", function (ev) {
    if (!active || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    var tag = (ev.target && ev.target.tagName) || "";
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
    var now = Number(active.dataset.selected), last = Number(active.dataset.steps), next = null;
    if (ev.key === "ArrowRight" || ev.key === "j") {
      // past the end of a lasso: around its loop again
      next = now === last && active.dataset.loop !== undefined ? Number(active.dataset.loop)
        : now + 1;
    }
    else if (ev.key === "ArrowLeft" || ev.key === "k") next = now - 1;
    else if (ev.key === "Home") next = 0;
    else if (ev.key === "End") next = last;
    if (next === null) return;
    ev.preventDefault();
    select(active, next, true);
  });
  window.irqReport = {select: function (id, i) {
    var s = document.getElementById(id); activate(s); select(s, i, true); },
    active: function () { return active ? active.id : null; }};
})();
