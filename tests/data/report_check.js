// Injected into a copy of a Snakemake report by tests/test_deploy.py: shows every result
// through the report's own app (as a click on it would) and writes what rendered into
// <pre id="ihdm-check"> as JSON, which the test reads from the DOM headless Chromium dumps.
window.addEventListener("load", async () => {
  const sleep = (ms) => new Promise((done) => setTimeout(done, ms));
  const check = { description: "", results: {}, categories: {}, error: null };
  try {
  await sleep(500);
  const prose = document.querySelector(".prose");
  check.description = prose ? prose.innerText : "";
  for (const [path, entry] of Object.entries(results)) {
    const mime = entry.mime_type;
    const kind = mime.startsWith("image/") ? "img" : mime === "text/html" ? "html" : null;
    const record = { mime, caption: entry.caption.replace(/<[^>]*>/g, "").trim().length, labels: entry.labels };
    if (kind) {
      app.setView({ content: kind, contentPath: entry.data_uri, resultPath: path });
      for (let i = 0; i < 100 && record.shown === undefined; i++) {
        await sleep(100);
        if (kind === "img") {
          const img = [...document.querySelectorAll("img")].find((el) => el.src === entry.data_uri);
          if (img && img.complete && img.naturalWidth > 0) {
            record.shown = [img.naturalWidth, img.naturalHeight];
          }
        } else {
          const frame = [...document.querySelectorAll("iframe")].find((el) => el.src === entry.data_uri);
          if (frame && frame.offsetHeight > 0) {
            const page = await (await fetch(entry.data_uri)).text();
            record.shown = (page.match(/<table/g) || []).length;
            record.rows = (page.match(/<tr>/g) || []).length;
          }
        }
      }
    }
    check.results[path] = record;
  }
  check.categories = Object.fromEntries(
    Object.entries(categories).map(([name, subs]) => [name, Object.keys(subs)]));
  } catch (error) {
    check.error = String(error);
  }
  const pre = document.createElement("pre");
  pre.id = "ihdm-check";
  pre.textContent = JSON.stringify(check);
  document.body.appendChild(pre);
});
