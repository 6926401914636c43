// table_lag.mjs - bench/table_lag.sh's reader: polls a directory lake's Iceberg table with
// icebird and records when each event id is first seen.
//
//   node table_lag.mjs LAKE_DIR OUT_DIR POLL_MS DEADLINE_MS
//
// Every POLL_MS (a poll that takes longer is followed by the next one at once) it reads the
// table as a reader without a catalog does: icebird fetches metadata/version-hint.text, that
// version's metadata, manifest list, manifests and data files, and reads every row. Before
// the first commit there is no table: such a poll counts as empty, not as an error.
// It appends to OUT_DIR/seen.tsv `id<TAB>poll start ms<TAB>poll end ms` for each id seen for
// the first time, and to OUT_DIR/polls.tsv `start ms, end ms, version, rows, new ids, error`
// per poll. It stops once OUT_DIR/done exists, holding `N UNTIL_MS` (the script posted N
// events), and either N distinct ids have been seen or the clock passed UNTIL_MS; and at
// DEADLINE_MS (epoch ms) whatever happens. Exit 0, or 1 when the lake cannot be served.
//
// The table's locations are file:///<lake dir>/…, which icebird cannot fetch; as in
// tests/iceberg/read.mjs, a loopback HTTP server (Range requests supported) serves the lake
// directory and globalThis.fetch is wrapped to send such URLs there. The transport is ours,
// the reading is icebird's.
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { icebergMetadata, icebergRead } from 'icebird'

const [lakeArg, out, pollArg, deadlineArg] = process.argv.slice(2)
const lake = fs.realpathSync(lakeArg)
const pollMs = Number(pollArg)
const deadline = Number(deadlineArg)

const server = http.createServer((req, res) => {
  const file = path.join(lake, decodeURIComponent(new URL(req.url, 'http://x').pathname))
  let st
  try {
    st = fs.statSync(file)
  } catch {
    st = null
  }
  if (!file.startsWith(lake + '/') || !st || !st.isFile()) {
    res.writeHead(404).end()
    return
  }
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '')
  if (range) {
    const start = Number(range[1])
    const end = range[2] ? Math.min(Number(range[2]), st.size - 1) : st.size - 1
    res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${st.size}`, 'content-length': end - start + 1 })
    fs.createReadStream(file, { start, end }).pipe(res)
  } else {
    res.writeHead(200, { 'content-length': st.size })
    fs.createReadStream(file).pipe(res)
  }
})
await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
const origin = `http://127.0.0.1:${server.address().port}`
const tableUrl = `file://${lake}`
const realFetch = globalThis.fetch
globalThis.fetch = (input, init) => {
  const url = typeof input === 'string' ? input : input.url
  if (url.startsWith(tableUrl + '/')) return realFetch(origin + url.slice(tableUrl.length), init)
  return realFetch(input, init)
}

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const seen = new Set()
const seenOut = fs.openSync(path.join(out, 'seen.tsv'), 'a')
const pollsOut = fs.openSync(path.join(out, 'polls.tsv'), 'a')

function done() {
  let d
  try {
    d = fs.readFileSync(path.join(out, 'done'), 'utf8').trim().split(/\s+/).map(Number)
  } catch {
    return false
  }
  return seen.size >= d[0] || Date.now() > d[1]
}

while (Date.now() < deadline && !done()) {
  const t0 = Date.now()
  let version = '-', rows = 0, fresh = [], error = ''
  if (fs.existsSync(path.join(lake, 'metadata', 'version-hint.text'))) {
    try {
      const metadata = await icebergMetadata({ tableUrl })
      version = String(metadata['last-sequence-number'] ?? '-')
      if (metadata['current-snapshot-id'] !== undefined && metadata['current-snapshot-id'] !== -1) {
        const got = await icebergRead({ tableUrl, metadata })
        rows = got.length
        for (const r of got) {
          if (!seen.has(r.id)) {
            seen.add(r.id)
            fresh.push(r.id)
          }
        }
      }
    } catch (e) {
      error = String(e.message || e).replace(/\s+/g, ' ').slice(0, 200)
    }
  }
  const t1 = Date.now()
  if (fresh.length) fs.writeSync(seenOut, fresh.map(id => `${id}\t${t0}\t${t1}\n`).join(''))
  fs.writeSync(pollsOut, `${t0}\t${t1}\t${version}\t${rows}\t${fresh.length}\t${error}\n`)
  const wait = t0 + pollMs - Date.now()
  if (wait > 0) await sleep(wait)
}
server.close()
process.exit(0)
