// read.mjs - icebird reads the Iceberg table of a lake: a directory, or s3://BUCKET/PREFIX
// on the S3 test server.
//
//   node read.mjs LAKE_DIR|s3://BUCKET/PREFIX [--expect EXPECTED.ndjson] [--out ROWS.ndjson]
//
// A directory's table locations are file:///<lake dir>/…, which icebird cannot fetch; so
// a loopback HTTP server (Range requests supported) serves the lake directory and
// globalThis.fetch is wrapped to send such URLs there. An S3 lake's are s3://BUCKET/KEY,
// which icebird fetches as https://BUCKET.s3.amazonaws.com/KEY, unsigned; s3.mjs wraps
// globalThis.fetch to send those to the test server named by AWS_ENDPOINT_URL, signed
// with the credentials of the environment (the bucket is private, as in production).
// The transport is ours, the reading (metadata, manifest lists, manifests, Parquet) is
// icebird's. The rows are
// printed (or written to --out) as NDJSON in a normal form, ordered by id:
// timestamps as ISO strings (milliseconds), absent values null. With --expect, the
// rows must be exactly those of the file (DuckDB's reading, in the same form).
import fs from 'node:fs'
import http from 'node:http'
import path from 'node:path'
import { icebergRead } from 'icebird'

const args = process.argv.slice(2)
const onS3 = args[0].startsWith('s3://')
const lake = onS3 ? args[0].replace(/\/+$/, '') : fs.realpathSync(args[0])
const opt = name => (args.indexOf(name) > 0 ? args[args.indexOf(name) + 1] : undefined)

// A directory served on loopback; not started for an S3 lake.
const server = http.createServer((req, res) => {
  const file = path.join(lake, decodeURIComponent(new URL(req.url, 'http://x').pathname))
  if (!file.startsWith(lake + '/') || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
    res.writeHead(404).end()
    return
  }
  const size = fs.statSync(file).size
  const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range || '')
  if (range) {
    const start = Number(range[1])
    const end = range[2] ? Math.min(Number(range[2]), size - 1) : size - 1
    res.writeHead(206, { 'content-range': `bytes ${start}-${end}/${size}`, 'content-length': end - start + 1 })
    fs.createReadStream(file, { start, end }).pipe(res)
  } else {
    res.writeHead(200, { 'content-length': size })
    fs.createReadStream(file).pipe(res)
  }
})
const tableUrl = onS3 ? lake : `file://${lake}`
if (onS3) {
  const { routeS3ToTestServer } = await import('./s3.mjs')
  routeS3ToTestServer()
} else {
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve))
  const origin = `http://127.0.0.1:${server.address().port}`
  const realFetch = globalThis.fetch
  globalThis.fetch = (input, init) => {
    const url = typeof input === 'string' ? input : input.url
    if (url.startsWith(tableUrl + '/')) return realFetch(origin + url.slice(tableUrl.length), init)
    return realFetch(input, init)
  }
}

const iso = v => {
  if (v === undefined || v === null) return null
  if (v instanceof Date) return v.toISOString()
  if (typeof v === 'bigint') return new Date(Number(v / 1000n)).toISOString() // microseconds
  return v
}
const val = v => (v === undefined ? null : typeof v === 'bigint' ? Number(v) : v)
const normal = r => ({
  id: val(r.id),
  type: val(r.type),
  ts: iso(r.ts),
  receivedAt: iso(r.receivedAt),
  do: r.do === undefined || r.do === null ? null
    : { id: val(r.do.id), name: val(r.do.name), class: val(r.do.class), colo: val(r.do.colo) },
  method: val(r.method),
  durationMs: val(r.durationMs),
  success: val(r.success),
  error: val(r.error),
  collection: val(r.collection),
  docId: val(r.docId),
  doc: val(r.doc),
  prev: val(r.prev),
  bookmark: val(r.bookmark),
  _events_json: val(r._events_json),
})
const ndjson = rows =>
  rows.map(normal).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    .map(r => JSON.stringify(r)).join('\n') + '\n'

let status = 0
try {
  const rows = await icebergRead({ tableUrl })
  const got = ndjson(rows)
  if (opt('--out')) fs.writeFileSync(opt('--out'), got)
  else process.stdout.write(got)
  if (opt('--expect')) {
    const lines = fs.readFileSync(opt('--expect'), 'utf8').split('\n').filter(l => l)
    const want = ndjson(lines.map(l => JSON.parse(l)))
    if (got === want) {
      console.error(`icebird: ${rows.length} rows, exactly as DuckDB reads the live files`)
    } else {
      const g = got.split('\n'), w = want.split('\n')
      const i = g.findIndex((l, k) => l !== w[k])
      console.error(`icebird: ${g.length - 1} rows, DuckDB ${w.length - 1}; first difference at row ${i}:`)
      console.error(`  expected: ${w[i]}\n  actual:   ${g[i]}`)
      status = 1
    }
  }
} catch (e) {
  console.error(`icebird: ${e.stack || e}`)
  status = 1
}
if (server.listening) server.close()
process.exit(status)
