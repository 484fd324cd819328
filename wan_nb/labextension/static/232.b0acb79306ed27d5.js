"use strict";(self.rspackChunkwan_nb=self.rspackChunkwan_nb||[]).push([[232],{475(n,a,e){var o=e(601),r=e.n(o),t=e(314),i=(e.n(t))()(r());i.push([n.id,`/* Theme variables only, so the light and dark themes both apply. */
.wan-nb-Sidebar {
  display: flex;
  flex-direction: column;
  overflow-y: auto;
  min-width: 240px;
  background: var(--jp-layout-color1);
  color: var(--jp-ui-font-color1);
  font-size: var(--jp-ui-font-size1);
}

.wan-nb-Sidebar-header {
  display: flex;
  align-items: baseline;
  justify-content: space-between;
  gap: 8px;
  padding: 8px 12px 4px;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
}

.wan-nb-Sidebar-header h2 {
  margin: 0;
  font-size: var(--jp-ui-font-size1);
  font-weight: 600;
  text-transform: uppercase;
  letter-spacing: 0.04em;
}

.wan-nb-Sidebar-state {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
}

.wan-nb-Sidebar-state[data-stream='reconnecting'] {
  color: var(--jp-warn-color1);
}

.wan-nb-Sidebar-notice {
  margin: 12px;
  color: var(--jp-ui-font-color2);
  line-height: 1.4;
}

.wan-nb-Sidebar[data-availability='missing'] .wan-nb-Sidebar-notice,
.wan-nb-Sidebar[data-availability='error'] .wan-nb-Sidebar-notice {
  color: var(--jp-ui-font-color1);
  border-left: 3px solid var(--jp-warn-color1);
  padding-left: 8px;
}

.wan-nb-Sidebar-list {
  list-style: none;
  margin: 0;
  padding: 0;
}

.wan-nb-Row {
  padding: 8px 12px;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
  contain: content;
}

.wan-nb-Row-head {
  display: flex;
  gap: 8px;
  align-items: flex-start;
}

.wan-nb-Row-thumb {
  width: 64px;
  height: 48px;
  object-fit: cover;
  border-radius: 2px;
  background: var(--jp-layout-color3);
  flex: none;
}

.wan-nb-Row-text {
  min-width: 0;
  flex: 1;
}

.wan-nb-Row-prompt {
  overflow: hidden;
  text-overflow: ellipsis;
  white-space: nowrap;
  font-weight: 500;
}

.wan-nb-Row-meta,
.wan-nb-Row-stats {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
}

.wan-nb-Row-stats {
  display: flex;
  flex-wrap: wrap;
  gap: 0 8px;
  margin-top: 2px;
  font-variant-numeric: tabular-nums;
}

.wan-nb-Row-stats span:empty {
  display: none;
}

.wan-nb-Row-vram[data-level='warning'] {
  color: var(--jp-warn-color1);
}

.wan-nb-Row-vram[data-level='critical'] {
  color: var(--jp-error-color1);
}

.wan-nb-Row-bar {
  height: 4px;
  margin-top: 6px;
  background: var(--jp-layout-color3);
  border-radius: 2px;
  overflow: hidden;
}

.wan-nb-Row-fill {
  height: 100%;
  width: 0;
  background: var(--jp-brand-color1);
  transition: width 0.1s linear;
}

.wan-nb-Row[data-status='completed'] .wan-nb-Row-fill {
  background: var(--jp-success-color1);
}

.wan-nb-Row[data-status='failed'] .wan-nb-Row-fill,
.wan-nb-Row[data-status='lost'] .wan-nb-Row-fill {
  background: var(--jp-error-color1);
}

.wan-nb-Row[data-status='cancelled'] .wan-nb-Row-fill,
.wan-nb-Row[data-status='paused'] .wan-nb-Row-fill {
  background: var(--jp-warn-color1);
}

.wan-nb-Row-error {
  margin-top: 4px;
  color: var(--jp-error-color1);
  font-size: var(--jp-ui-font-size0);
  word-break: break-word;
}

.wan-nb-Row-scenes,
.wan-nb-Row-actions {
  display: flex;
  flex-wrap: wrap;
  gap: 4px;
  margin-top: 6px;
}

.wan-nb-Button {
  padding: 2px 8px;
  border: var(--jp-border-width) solid var(--jp-border-color1);
  border-radius: var(--jp-border-radius);
  background: var(--jp-layout-color2);
  color: var(--jp-ui-font-color1);
  font-size: var(--jp-ui-font-size0);
  cursor: pointer;
  text-decoration: none;
}

.wan-nb-Button:hover {
  background: var(--jp-layout-color3);
}

.wan-nb-Button:focus-visible,
.wan-nb-Status:focus-visible {
  outline: 2px solid var(--jp-brand-color1);
  outline-offset: 1px;
}

.wan-nb-Button:disabled {
  opacity: 0.6;
  cursor: default;
}

.wan-nb-Button[hidden],
.wan-nb-Row [hidden] {
  display: none;
}

/* "Queued (#2)": where a waiting task stands in its generator's queue. */
.wan-nb-Row-queue {
  flex: none;
  padding: 0 6px;
  border: var(--jp-border-width) solid var(--jp-border-color1);
  border-radius: var(--jp-border-radius);
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
  font-variant-numeric: tabular-nums;
  white-space: nowrap;
}

.wan-nb-up,
.wan-nb-down {
  padding: 2px 6px;
}

.wan-nb-more {
  margin: 8px 12px;
  align-self: flex-start;
}

.wan-nb-Player {
  display: flex;
  flex-direction: column;
  background: var(--jp-layout-color0);
}

.wan-nb-Player video {
  flex: 1;
  min-height: 0;
  width: 100%;
  background: black;
}

.wan-nb-Player-bar {
  display: flex;
  gap: 8px;
  align-items: center;
  padding: 6px 12px;
  color: var(--jp-ui-font-color1);
}

.wan-nb-Player-caption {
  flex: 1;
  overflow: hidden;
  text-overflow: ellipsis;
  white-space: nowrap;
}

.wan-nb-Status {
  display: flex;
  align-items: center;
  gap: 6px;
  padding: 0 6px;
  border: none;
  background: none;
  color: var(--jp-ui-font-color1);
  font: inherit;
  font-size: var(--jp-ui-font-size1);
  cursor: pointer;
}

.wan-nb-Status-spark polyline {
  fill: none;
  stroke: var(--jp-brand-color1);
  stroke-width: 1.5;
}

.wan-nb-Player-stage {
  display: flex;
  flex: 1;
  min-height: 0;
  gap: 8px;
}

.wan-nb-Player-stage > video {
  flex: 1;
  min-width: 0;
}

.wan-nb-Player-inputs {
  display: flex;
  flex-direction: column;
  gap: 8px;
  width: 25%;
  max-width: 320px;
  min-width: 120px;
  padding: 8px;
  overflow-y: auto;
  color: var(--jp-ui-font-color1);
  background: var(--jp-layout-color1);
}

.wan-nb-Player-inputs[hidden] {
  display: none;
}

.wan-nb-Player-input {
  display: flex;
  flex-wrap: wrap;
  gap: 4px;
  margin: 0;
}

.wan-nb-Player-input img,
.wan-nb-Player-input video {
  flex: 1 1 45%;
  min-width: 0;
  max-width: 100%;
  max-height: 24vh; /* four inputs fit beside the video without scrolling */
  object-fit: contain;
  image-rendering: pixelated;
  background: black;
}

.wan-nb-Player-input[data-kind='image'] img,
.wan-nb-Player-input[data-kind='video'] video {
  flex-basis: 100%;
}

.wan-nb-Player-input figcaption {
  flex-basis: 100%;
  font-size: var(--jp-ui-font-size0);
  color: var(--jp-ui-font-color2);
}

/* "Runs from": where the listed runs come from, folded by default. */
.wan-nb-Sources {
  margin: 0 8px 6px;
  font-size: var(--jp-ui-font-size0, 11px);
  color: var(--jp-ui-font-color2);
}
.wan-nb-Sources-list {
  list-style: none;
  margin: 4px 0 0;
  padding: 0;
}
.wan-nb-Sources-item {
  display: flex;
  align-items: center;
  gap: 6px;
  padding: 2px 0;
}
.wan-nb-Sources-item code {
  flex: 1 1 auto;
  min-width: 0;
  overflow: hidden;
  text-overflow: ellipsis;
  white-space: nowrap;
}
.wan-nb-Sources-why {
  flex: 0 0 auto;
  opacity: 0.8;
}

.wan-nb-Sidebar-options {
  display: flex;
  gap: 8px;
  padding: 2px 12px 4px;
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
}

.wan-nb-Notify {
  display: inline-flex;
  align-items: center;
  gap: 2px;
  cursor: pointer;
}

/* "Resumed as …" / "Continues …": the link between a stopped run and its continuation. */
.wan-nb-Row-link {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
  overflow: hidden;
  text-overflow: ellipsis;
  white-space: nowrap;
}

/* The run a Resume just started: marked until another is followed. */
.wan-nb-Row[data-followed='true'] {
  box-shadow: inset 3px 0 0 var(--jp-brand-color1);
}
`,""]),e.d(a,{},{A:i})},314(n){n.exports=function(n){var a=[];return a.toString=function(){return this.map(function(a){var e="",o=void 0!==a[5];return a[4]&&(e+="@supports (".concat(a[4],") {")),a[2]&&(e+="@media ".concat(a[2]," {")),o&&(e+="@layer".concat(a[5].length>0?" ".concat(a[5]):""," {")),e+=n(a),o&&(e+="}"),a[2]&&(e+="}"),a[4]&&(e+="}"),e}).join("")},a.i=function(n,e,o,r,t){"string"==typeof n&&(n=[[null,n,void 0]]);var i={};if(o)for(var l=0;l<this.length;l++){var p=this[l][0];null!=p&&(i[p]=!0)}for(var s=0;s<n.length;s++){var d=[].concat(n[s]);o&&i[d[0]]||(void 0!==t&&(void 0===d[5]||(d[1]="@layer".concat(d[5].length>0?" ".concat(d[5]):""," {").concat(d[1],"}")),d[5]=t),e&&(d[2]&&(d[1]="@media ".concat(d[2]," {").concat(d[1],"}")),d[2]=e),r&&(d[4]?(d[1]="@supports (".concat(d[4],") {").concat(d[1],"}"),d[4]=r):d[4]="".concat(r)),a.push(d))}},a}},601(n){n.exports=function(n){return n[1]}},72(n){var a=[];function e(n){for(var e=-1,o=0;o<a.length;o++)if(a[o].identifier===n){e=o;break}return e}function o(n,o){for(var r={},t=[],i=0;i<n.length;i++){var l=n[i],p=o.base?l[0]+o.base:l[0],s=r[p]||0,d="".concat(p," ").concat(s);r[p]=s+1;var c=e(d),u={css:l[1],media:l[2],sourceMap:l[3],supports:l[4],layer:l[5]};if(-1!==c)a[c].references++,a[c].updater(u);else{var w=function(n,a){var e=a.domAPI(a);return e.update(n),function(a){a?(a.css!==n.css||a.media!==n.media||a.sourceMap!==n.sourceMap||a.supports!==n.supports||a.layer!==n.layer)&&e.update(n=a):e.remove()}}(u,o);o.byIndex=i,a.splice(i,0,{identifier:d,updater:w,references:1})}t.push(d)}return t}n.exports=function(n,r){var t=o(n=n||[],r=r||{});return function(n){n=n||[];for(var i=0;i<t.length;i++){var l=e(t[i]);a[l].references--}for(var p=o(n,r),s=0;s<t.length;s++){var d=e(t[s]);0===a[d].references&&(a[d].updater(),a.splice(d,1))}t=p}}},659(n){var a={};n.exports=function(n,e){var o=function(n){if(void 0===a[n]){var e=document.querySelector(n);if(window.HTMLIFrameElement&&e instanceof window.HTMLIFrameElement)try{e=e.contentDocument.head}catch(n){e=null}a[n]=e}return a[n]}(n);if(!o)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");o.appendChild(e)}},540(n){n.exports=function(n){var a=document.createElement("style");return n.setAttributes(a,n.attributes),n.insert(a,n.options),a}},56(n,a,e){n.exports=function(n){var a=e.nc;a&&n.setAttribute("nonce",a)}},825(n){n.exports=function(n){if("u"<typeof document)return{update:function(){},remove:function(){}};var a=n.insertStyleElement(n);return{update:function(e){var o,r,t;o="",e.supports&&(o+="@supports (".concat(e.supports,") {")),e.media&&(o+="@media ".concat(e.media," {")),(r=void 0!==e.layer)&&(o+="@layer".concat(e.layer.length>0?" ".concat(e.layer):""," {")),o+=e.css,r&&(o+="}"),e.media&&(o+="}"),e.supports&&(o+="}"),(t=e.sourceMap)&&"u">typeof btoa&&(o+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(t))))," */")),n.styleTagTransform(o,a,n.options)},remove:function(){var n;null===(n=a).parentNode||n.parentNode.removeChild(n)}}}},113(n){n.exports=function(n,a){if(a.styleSheet)a.styleSheet.cssText=n;else{for(;a.firstChild;)a.removeChild(a.firstChild);a.appendChild(document.createTextNode(n))}}},579(n,a,e){var o=e(72),r=e.n(o),t=e(825),i=e.n(t),l=e(659),p=e.n(l),s=e(56),d=e.n(s),c=e(540),u=e.n(c),w=e(113),f=e.n(w),b=e(475),v={};v.styleTagTransform=f(),v.setAttributes=d(),v.insert=p().bind(null,"head"),v.domAPI=i(),v.insertStyleElement=u(),r()(b.A,v),b.A&&b.A.locals&&b.A.locals}}]);