// Stallwatch report client for .NET 8+ broadcasters: paste this file into the service.
//
// It fits the shape of the story's service: one bounded `Channel<T>` (drop-oldest) per stream,
// one reader task per channel that dispatches to gRPC subscribers. Wrap each channel in a
// `ReportedChannel<T>`, register it with a `StallwatchReporter`, and start the reporter. The
// reporter runs on its own `PeriodicTimer` loop, outside the dispatcher tasks, and observes each
// reader task itself: a reader that faulted (the story's swallowed `int.Parse` exception) is
// reported as `dead` with the exception as `last_error`, and its full channel as "no progress".
//
// Protocol: `stallwatch.report.v1` (docs/report-protocol.md in the Stallwatch repository).
// Needs only the base class library: System.Net.Http, System.Text.Json, System.Threading.Channels.

using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Diagnostics;
using System.Net.Http;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Threading;
using System.Threading.Channels;
using System.Threading.Tasks;

namespace Stallwatch.Reporting;

/// <summary>
/// A bounded drop-oldest channel that counts what the report protocol needs. Writers never
/// block; when the channel is full the oldest item is evicted and counted.
/// </summary>
public sealed class ReportedChannel<T>
{
    private readonly Channel<T> _channel;
    private long _enqueued, _dequeued, _dropped, _quarantined, _lastDequeueMs = -1;
    private long _subscribers, _delivered, _restarts;
    private volatile ErrorReport? _lastError;
    private Task? _reader;
    private bool _supervised;
    private volatile bool _restarting;

    public ReportedChannel(string name, int capacity = 5)
    {
        if (capacity < 1) throw new ArgumentOutOfRangeException(nameof(capacity), "capacity must be at least 1");
        Name = name;
        Capacity = capacity;
        _channel = Channel.CreateBounded<T>(
            new BoundedChannelOptions(capacity) { FullMode = BoundedChannelFullMode.DropOldest },
            _ => Interlocked.Increment(ref _dropped));
    }

    public string Name { get; }
    public int Capacity { get; }

    /// <summary>Never blocks: a full channel drops its oldest item (counted).</summary>
    public bool TryWrite(T item)
    {
        Interlocked.Increment(ref _enqueued);
        return _channel.Writer.TryWrite(item);
    }

    /// <summary>Reads the next item and counts the dequeue. Call only from the reader task.</summary>
    public async ValueTask<T> ReadAsync(CancellationToken ct)
    {
        var item = await _channel.Reader.ReadAsync(ct).ConfigureAwait(false);
        Interlocked.Increment(ref _dequeued);
        Interlocked.Exchange(ref _lastDequeueMs, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        return item;
    }

    /// <summary>
    /// Starts the reader task the reporter watches. With <paramref name="supervised"/> false
    /// (the story), a fault ends it for good and the report says <c>dead</c>; with true, the
    /// reporter sees <c>restarting</c> while this restarts it after a short backoff.
    /// </summary>
    public Task StartReader(Func<ReportedChannel<T>, CancellationToken, Task> reader, CancellationToken ct, bool supervised = false)
    {
        _supervised = supervised;
        _reader = Task.Run(() => reader(this, ct), ct);
        _reader.ContinueWith(t =>
        {
            // Observing the exception here keeps it from being "unobserved" and lost: it becomes
            // the stream's last_error, which the sidecar shows in the verdict and dump bundle.
            if (t.Exception is { } ex) RecordError(ex.GetBaseException());
            if (_supervised && !ct.IsCancellationRequested)
            {
                _restarting = true;
                Interlocked.Increment(ref _restarts);
                Task.Delay(100, ct).ContinueWith(_ => { _restarting = false; StartReader(reader, ct, supervised); }, ct);
            }
        }, TaskScheduler.Default);
        return _reader;
    }

    public void RecordError(Exception ex) => _lastError = new ErrorReport(
        DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
        StallwatchReporter.Truncate($"{ex.GetType().Name}: {ex.Message}"));

    public void Quarantined(Exception ex) { Interlocked.Increment(ref _quarantined); RecordError(ex); }
    public void SetSubscribers(long count) => Interlocked.Exchange(ref _subscribers, count);
    public void Delivered(long count = 1) => Interlocked.Add(ref _delivered, count);

    internal StreamReport Snapshot()
    {
        var reader = _reader;
        var state = reader is null ? "missing"
            : !reader.IsCompleted ? "running"
            : _restarting ? "restarting"
            : "dead";
        long enqueued = Interlocked.Read(ref _enqueued), dequeued = Interlocked.Read(ref _dequeued);
        var depth = Math.Min(_channel.Reader.Count, Capacity);
        var last = Interlocked.Read(ref _lastDequeueMs);
        return new StreamReport(
            Name,
            new ChannelReport(depth, Capacity),
            Math.Max(enqueued, dequeued), dequeued,
            Interlocked.Read(ref _dropped), Interlocked.Read(ref _quarantined),
            last < 0 ? null : last,
            new DispatcherReport(state, Interlocked.Read(ref _restarts)),
            _lastError,
            Interlocked.Read(ref _subscribers), Interlocked.Read(ref _delivered));
    }
}

/// <summary>Reports every registered channel to the sidecar on its own timer.</summary>
public sealed class StallwatchReporter : IAsyncDisposable
{
    public const string Protocol = "stallwatch.report.v1";
    public const int MaxTextBytes = 4096;

    private readonly ConcurrentDictionary<string, Func<StreamReport>> _streams = new();
    private readonly HttpClient _http;
    private readonly Uri _url;
    private readonly TimeSpan _interval;
    private readonly CancellationTokenSource _stop = new();
    private readonly string _version;
    private long _seq;
    private Task? _loop;

    /// <param name="url">The sidecar's ingest URL, default http://127.0.0.1:9464/v1/reports.</param>
    public StallwatchReporter(Uri? url = null, TimeSpan? interval = null, string version = "dotnet-broadcaster")
    {
        _url = url ?? new Uri("http://127.0.0.1:9464/v1/reports");
        _interval = interval ?? TimeSpan.FromMilliseconds(250);
        _version = Truncate(version);
        // A request must never outlive the interval: a slow sidecar must not delay the next report.
        _http = new HttpClient { Timeout = _interval * 0.8 };
        Instance = Convert.ToHexString(RandomNumberGenerator.GetBytes(8)).ToLowerInvariant();
    }

    /// <summary>One per process lifetime: a new value tells the sidecar the service restarted.</summary>
    public string Instance { get; }
    public long Sent { get; private set; }
    public long Refused { get; private set; }
    public long Failed { get; private set; }
    public string? LastRefusal { get; private set; }

    public void Register<T>(ReportedChannel<T> channel)
    {
        if (!_streams.TryAdd(channel.Name, channel.Snapshot))
            throw new ArgumentException($"stream {channel.Name} is registered twice");
    }

    public void Start() => _loop = Task.Run(RunAsync);

    private async Task RunAsync()
    {
        using var timer = new PeriodicTimer(_interval);
        do
        {
            try
            {
                using var body = new StringContent(BuildJson(), Encoding.UTF8, "application/json");
                using var resp = await _http.PostAsync(_url, body, _stop.Token).ConfigureAwait(false);
                if ((int)resp.StatusCode == 202) Sent++;
                else
                {
                    // 400/409/413: this client or its counters are wrong; retrying the same
                    // document will not help, so count it and keep the reason for the logs.
                    Refused++;
                    LastRefusal = $"HTTP {(int)resp.StatusCode}: {await resp.Content.ReadAsStringAsync().ConfigureAwait(false)}";
                }
            }
            catch (Exception) when (!_stop.IsCancellationRequested)
            {
                // Sidecar absent or restarting: keep broadcasting, try again next tick.
                Failed++;
            }
        } while (await timer.WaitForNextTickAsync(_stop.Token).ConfigureAwait(false));
    }

    public string BuildJson()
    {
        var report = new Report(
            Protocol, Instance, Interlocked.Increment(ref _seq),
            DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
            (long)_interval.TotalMilliseconds, Environment.ProcessId, _version,
            BuildStreams());
        return JsonSerializer.Serialize(report, JsonOptions);
    }

    private List<StreamReport> BuildStreams()
    {
        var list = new List<StreamReport>();
        foreach (var snapshot in _streams.Values) list.Add(snapshot());
        list.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        return list;
    }

    public static string Truncate(string text)
    {
        text = text.ReplaceLineEndings(" ");
        if (Encoding.UTF8.GetByteCount(text) <= MaxTextBytes) return text;
        var sb = new StringBuilder();
        var bytes = 0;
        foreach (var rune in text.EnumerateRunes())
        {
            bytes += rune.Utf8SequenceLength;
            if (bytes > MaxTextBytes) break;
            sb.Append(rune.ToString());
        }
        return sb.ToString();
    }

    private static readonly JsonSerializerOptions JsonOptions = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        if (_loop is not null) { try { await _loop.ConfigureAwait(false); } catch (OperationCanceledException) { } }
        _http.Dispose();
    }
}

// The document, field for field as docs/report-protocol.md specifies (snake_case on the wire).
public sealed record Report(string Protocol, string Instance, long Seq, long SentAtMs, long IntervalMs,
    int Pid, string Version, List<StreamReport> Streams);
public sealed record StreamReport(string Name, ChannelReport Channel, long EnqueuedTotal, long DequeuedTotal,
    long DroppedOldestTotal, long QuarantinedTotal, long? LastDequeueMs, DispatcherReport Dispatcher,
    ErrorReport? LastError, long Subscribers, long DeliveredTotal);
public sealed record ChannelReport(long Depth, long Capacity);
public sealed record DispatcherReport(string State, long RestartsTotal);
public sealed record ErrorReport(long AtMs, string Message);
