// Store's upload form, with progress: each chosen file (or each file of a chosen folder, keeping
// its relative path) is sent on its own with XMLHttpRequest, and its progress and the total are
// shown; once all are in, the folder is shown again. Without script the same form posts
// every file at once.
(function () {
  "use strict";
  var form = document.querySelector("form[data-store-upload]");
  if (!form || !window.XMLHttpRequest || !window.FormData) { return; }
  var wordsNode = document.getElementById("store-upload-words");
  var words = wordsNode && wordsNode.content ? wordsNode.content.firstElementChild.dataset : {};
  var box = form.querySelector(".store-progress");
  var total = box.querySelector(".store-progress-total progress");
  var totalText = box.querySelector(".store-progress-text");
  var list = box.querySelector(".store-progress-files");

  function chosen() {
    var files = [];
    form.querySelectorAll("input[type=file]").forEach(function (input) {
      Array.prototype.forEach.call(input.files || [], function (file) {
        files.push({ file: file, path: file.webkitRelativePath || file.name });
      });
    });
    return files;
  }

  function row(path) {
    var item = document.createElement("li");
    var name = document.createElement("span");
    name.className = "name";
    name.textContent = path;
    var bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    var state = document.createElement("span");
    state.textContent = words.sending || "";
    item.appendChild(name);
    item.appendChild(bar);
    item.appendChild(state);
    list.appendChild(item);
    return { bar: bar, state: state, item: item };
  }

  form.addEventListener("submit", function (event) {
    var files = chosen();
    if (!files.length) { return; }  // the server says what is missing
    event.preventDefault();
    var button = form.querySelector("button[type=submit]");
    button.disabled = true;
    box.hidden = false;
    list.textContent = "";
    var sizes = files.map(function (f) { return f.file.size || 0; });
    var sent = files.map(function () { return 0; });
    var whole = sizes.reduce(function (a, b) { return a + b; }, 0) || 1;
    var failed = 0;
    var rows = files.map(function (f) { return row(f.path); });
    var token = form.querySelector("input[name=csrf_token]").value;
    var prefix = form.querySelector("input[name=prefix]").value;

    var answered = 0;

    function update() {
      // 100% only once every file is answered: a small last file must not round the total up.
      var done = sent.reduce(function (a, b) { return a + b; }, 0);
      var percent = Math.floor(done / whole * 100);
      total.value = answered < files.length ? Math.min(percent, 99) : percent;
      totalText.textContent = total.value + "%";
    }

    function next(index) {
      if (index >= files.length) {
        button.disabled = false;
        totalText.textContent = failed ? (words.someFailed || "") : (words.finished || "");
        if (!failed) {
          // The folder again, saying the files were uploaded (not what the last page said).
          var url = new URL(window.location.href);
          url.searchParams.set("done", "uploaded");
          window.location.assign(url.toString());
        }
        return;
      }
      var data = new FormData();
      data.append("csrf_token", token);
      data.append("prefix", prefix);
      data.append("paths", files[index].path);
      data.append("files", files[index].file, files[index].file.name);
      var request = new XMLHttpRequest();
      request.open("POST", form.action);
      request.setRequestHeader("Accept", "application/json");
      request.upload.addEventListener("progress", function (e) {
        if (e.lengthComputable) {
          rows[index].bar.value = Math.round(e.loaded / e.total * 100);
          sent[index] = Math.min(sizes[index], e.loaded);
          update();
        }
      });
      request.addEventListener("load", function () {
        var ok = request.status >= 200 && request.status < 300;
        rows[index].bar.value = ok ? 100 : rows[index].bar.value;
        rows[index].state.textContent = ok ? (words.done || "") : (words.failed || "");
        if (!ok) {
          failed += 1;
          rows[index].item.classList.add("failed");
        }
        sent[index] = sizes[index];
        answered += 1;
        update();
        next(index + 1);
      });
      request.addEventListener("error", function () {
        failed += 1;
        answered += 1;
        rows[index].state.textContent = words.failed || "";
        rows[index].item.classList.add("failed");
        next(index + 1);
      });
      request.send(data);
    }
    next(0);
  });
})();
