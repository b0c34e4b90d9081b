#pragma once
// YAML input, as people write manifests: one or more documents (`---`), each
// a Kubernetes object or a List. Each document becomes JSON text that the
// JSON parser (k8s.h) reads, so both formats share one reader, one set of
// rules and one set of error messages. Plain scalars resolve as kubectl's
// YAML reader (go-yaml v2, YAML 1.1) resolves them: `80` is a number, `"80"`
// a string, `yes`/`no`/`on`/`off` booleans, `~` and `null` null. Aliases
// (`*name`) are refused: Kubernetes manifests do not use them, and expanding
// them is how "billion laughs" inputs blow up.

#include <string>
#include <string_view>
#include <vector>

#include "netlink/status.h"

namespace kipvs::controller {

struct YamlDocument {
  int index = 0;  // 1-based position among the input's documents, empty ones included
  int line = 0;   // 1-based line where it starts
  std::string json;
};

// The input's documents as JSON, empty (null) documents left out. A YAML
// error is kParse, naming sourceName with line and column.
StatusOr<std::vector<YamlDocument>> yamlToJson(std::string_view text, std::string_view sourceName);

// Whether an input is YAML. As kubectl decides, by content: JSON when its
// first byte that is not whitespace is '{' (or '[', an error either way, the
// JSON parser's the clearer), whatever the file's name. Otherwise YAML,
// unless the file is named *.json: what starts oddly there gets the JSON
// parser's error, with its byte offset.
bool isYamlInput(std::string_view path, std::string_view text);

}  // namespace kipvs::controller
